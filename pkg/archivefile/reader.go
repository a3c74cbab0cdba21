package archivefile

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Object is one archive object.
type Object struct {
	Key          string
	Size         int64
	LastModified time.Time
}

// Reader reads the archive back.
type Reader struct {
	S3     *s3.Client
	Bucket string
}

// List returns the objects under prefix, in key order.
func (r Reader) List(ctx context.Context, prefix string) ([]Object, error) {
	var out []Object
	p := s3.NewListObjectsV2Paginator(r.S3, &s3.ListObjectsV2Input{Bucket: aws.String(r.Bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", r.Bucket, prefix, err)
		}
		for _, o := range page.Contents {
			obj := Object{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size)}
			if o.LastModified != nil {
				obj.LastModified = *o.LastModified
			}
			out = append(out, obj)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// SourceObjects returns a source's objects for the UTC days from..to
// (inclusive; zero times mean unbounded, which lists every day).
func (r Reader) SourceObjects(ctx context.Context, src string, from, to time.Time) ([]Object, error) {
	if from.IsZero() || to.IsZero() {
		all, err := r.List(ctx, SourcePrefix(src))
		if err != nil {
			return nil, err
		}
		var out []Object
		for _, o := range all {
			day, ok := dayOf(o.Key, src)
			if ok && (from.IsZero() || !day.Before(truncDay(from))) && (to.IsZero() || !day.After(truncDay(to))) {
				out = append(out, o)
			}
		}
		return out, nil
	}
	var out []Object
	for d := truncDay(from); !d.After(truncDay(to)); d = d.AddDate(0, 0, 1) {
		objs, err := r.List(ctx, DayPrefix(src, d))
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

func truncDay(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

func dayOf(key, src string) (time.Time, bool) {
	rest := key[len(SourcePrefix(src)):]
	if len(rest) < len("dt=2006-01-02") {
		return time.Time{}, false
	}
	d, err := time.Parse("2006-01-02", rest[3:13])
	return d, err == nil
}

// errUnreadable marks an object that was fetched but does not read as an
// archive object (not gzip, not NDJSON lines).
var errUnreadable = errors.New("not an archive object")

// Lines reads every line of one object.
func (r Reader) Lines(ctx context.Context, key string) ([]Line, error) {
	out, err := r.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(r.Bucket), Key: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("get s3://%s/%s: %w", r.Bucket, key, err)
	}
	defer out.Body.Close()
	zr, err := gzip.NewReader(out.Body)
	if err != nil {
		return nil, fmt.Errorf("s3://%s/%s: %w: %w", r.Bucket, key, errUnreadable, err)
	}
	defer zr.Close()
	var lines []Line
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 64<<10), 128<<20)
	for sc.Scan() {
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("s3://%s/%s line %d: %w: %w", r.Bucket, key, len(lines)+1, errUnreadable, err)
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		if isGzipDamage(err) {
			return nil, fmt.Errorf("s3://%s/%s: %w: %w", r.Bucket, key, errUnreadable, err)
		}
		return nil, fmt.Errorf("s3://%s/%s: %w", r.Bucket, key, err)
	}
	return lines, nil
}

// isGzipDamage tells a damaged stream from a connection that broke while
// reading it.
func isGzipDamage(err error) bool {
	return errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) || errors.Is(err, bufio.ErrTooLong)
}

// Errors of Find besides an S3 call's own.
var (
	// ErrNotArchived means no archive object holds the event.
	ErrNotArchived = errors.New("not in the archive")
	// ErrGarbled means the object that should hold the event cannot be
	// read as an archive object, or does not hold it.
	ErrGarbled = errors.New("archive object unreadable")
)

// Find returns the archived line of the event of src received at receivedAt
// at (partition, offset) of relay.events. Its object is the one of src and
// partition whose batch starts at or before offset nearest to it, in the
// event's hour or the hour before (a batch is named by the time of its
// source's first event). Errors wrap ErrNotArchived, ErrGarbled (naming the
// object), or an S3 call's.
func (r Reader) Find(ctx context.Context, src string, receivedAt time.Time, partition int32, offset int64) (Line, error) {
	best, bestFirst := "", int64(-1)
	for _, at := range []time.Time{receivedAt.Add(-time.Hour), receivedAt} {
		prefix := hourPrefix(src, at) + fmt.Sprintf("p%d-o", partition)
		objs, err := r.List(ctx, prefix)
		if err != nil {
			return Line{}, err
		}
		for _, o := range objs {
			p, first, ok := ParseObjectKey(o.Key)
			if ok && p == partition && first <= offset && first > bestFirst {
				best, bestFirst = o.Key, first
			}
		}
	}
	if best == "" {
		return Line{}, fmt.Errorf("%w: event at %d/%d of %s", ErrNotArchived, partition, offset, src)
	}
	lines, err := r.Lines(ctx, best)
	var notFound *types.NoSuchKey
	switch {
	case errors.As(err, &notFound):
		return Line{}, fmt.Errorf("%w: event at %d/%d of %s", ErrNotArchived, partition, offset, src)
	case errors.Is(err, errUnreadable):
		return Line{}, fmt.Errorf("%w: %v", ErrGarbled, err)
	case err != nil:
		return Line{}, err
	}
	for _, l := range lines {
		if l.Partition == partition && l.Offset == offset {
			return l, nil
		}
	}
	return Line{}, fmt.Errorf("%w: s3://%s/%s does not hold offset %d", ErrGarbled, r.Bucket, best, offset)
}

// hourPrefix is the prefix of a source's objects of one UTC hour.
func hourPrefix(src string, at time.Time) string {
	at = at.UTC()
	return fmt.Sprintf("%shour=%02d/", DayPrefix(src, at), at.Hour())
}
