// Package archivefile is the archive's object format: where and how Relay
// archives events in S3 (any S3-compatible store), that is the object layout,
// the NDJSON line format of proto/relay/v1 ArchiveLine, and the S3 client
// settings. The archive service writes it; ingest's events API and
// `relay archive ls|cat` read it back.
//
// Layout:
//
//	events/source=<src>/dt=YYYY-MM-DD/hour=HH/p<partition>-o<first offset>.ndjson.gz
//	_relay/batches/<topic>/p<partition>-o<first offset>.json   (batch markers)
//
// One object holds one source's share of one batch of one partition; it is
// named by the batch's first offset, so a batch re-processed after a crash
// overwrites its objects instead of adding copies.
package archivefile

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/record"
)

// Config says where the archive lives.
type Config struct {
	// Endpoint is the S3 endpoint URL (RELAY_S3_ENDPOINT); empty means AWS.
	Endpoint string
	// Bucket holds the archive (RELAY_S3_BUCKET). Required.
	Bucket string
	// Region (RELAY_S3_REGION, default us-east-1).
	Region string
	// PathStyle addresses buckets by path, as MinIO needs (RELAY_S3_PATH_STYLE).
	PathStyle bool
	// CreateBucket creates a missing bucket at start-up (RELAY_S3_CREATE_BUCKET, default true).
	CreateBucket bool
	// Timeout bounds each S3 call (RELAY_S3_TIMEOUT, default 60s).
	Timeout time.Duration
	// AccessKeyID and SecretAccessKey are static credentials
	// (RELAY_S3_ACCESS_KEY_ID, RELAY_S3_SECRET_ACCESS_KEY), for MinIO and
	// other S3-compatible stores; when empty the standard AWS chain is used
	// (AWS_* variables, profiles, instance and task roles).
	AccessKeyID     string
	SecretAccessKey string
	// Anonymous sends unsigned requests (local stand-ins only; not from the environment).
	Anonymous bool
}

// LoadConfig reads the RELAY_S3_* variables. Credentials come from the
// standard AWS chain (AWS_ACCESS_KEY_ID…, profiles, instance roles).
func LoadConfig(r *envconfig.Reader) Config {
	return Config{
		Endpoint:        r.String("RELAY_S3_ENDPOINT", ""),
		Bucket:          r.String("RELAY_S3_BUCKET", ""),
		Region:          r.String("RELAY_S3_REGION", "us-east-1"),
		PathStyle:       r.Bool("RELAY_S3_PATH_STYLE", false),
		CreateBucket:    r.Bool("RELAY_S3_CREATE_BUCKET", true),
		Timeout:         r.Duration("RELAY_S3_TIMEOUT", 60*time.Second),
		AccessKeyID:     r.String("RELAY_S3_ACCESS_KEY_ID", ""),
		SecretAccessKey: r.String("RELAY_S3_SECRET_ACCESS_KEY", ""),
	}
}

// Validate reports problems, naming their variables.
func (c Config) Validate() error {
	var errs []error
	if c.Bucket == "" {
		errs = append(errs, errors.New("RELAY_S3_BUCKET: required"))
	}
	if c.Endpoint != "" && !strings.HasPrefix(c.Endpoint, "http://") && !strings.HasPrefix(c.Endpoint, "https://") {
		errs = append(errs, fmt.Errorf("RELAY_S3_ENDPOINT: %q is not an http(s) URL", c.Endpoint))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("RELAY_S3_TIMEOUT: must be positive"))
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		errs = append(errs, errors.New("RELAY_S3_ACCESS_KEY_ID and RELAY_S3_SECRET_ACCESS_KEY: set both or neither"))
	}
	return errors.Join(errs...)
}

// NewClient returns an S3 client for c.
func NewClient(ctx context.Context, c Config) (*s3.Client, error) {
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(c.Region)}
	switch {
	case c.AccessKeyID != "":
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, "")))
	case c.Anonymous:
		opts = append(opts, awsconfig.WithCredentialsProvider(aws.AnonymousCredentials{}))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
		o.UsePathStyle = c.PathStyle
	}), nil
}

// SourcePrefix is the prefix of every object of a source.
func SourcePrefix(src string) string { return "events/source=" + src + "/" }

// DayPrefix is the prefix of a source's objects of one UTC day.
func DayPrefix(src string, day time.Time) string {
	return SourcePrefix(src) + "dt=" + day.UTC().Format("2006-01-02") + "/"
}

// ObjectKey names the object of a source's share of a batch.
func ObjectKey(src string, at time.Time, partition int32, firstOffset int64) string {
	at = at.UTC()
	return fmt.Sprintf("%shour=%02d/p%d-o%d.ndjson.gz", DayPrefix(src, at), at.Hour(), partition, firstOffset)
}

// MarkerKey names the marker recording a batch's extent before its objects
// are written, so a batch redone after a crash ends at the same offset.
func MarkerKey(topic string, partition int32, firstOffset int64) string {
	return fmt.Sprintf("_relay/batches/%s/p%d-o%d.json", topic, partition, firstOffset)
}

// Marker is the body of a batch marker.
type Marker struct {
	First int64 `json:"first"`
	Last  int64 `json:"last"`
}

// Line is one archived event: the JSON shape of proto/relay/v1 ArchiveLine
// (proto field names). It is written with encoding/json so that a JSON
// payload keeps its exact numbers, which a google.protobuf.Value would round
// through float64.
type Line struct {
	EventID       string            `json:"event_id"`
	SourceID      string            `json:"source_id"`
	EventType     string            `json:"event_type"`
	ReceivedAt    time.Time         `json:"received_at"`
	ContentType   string            `json:"content_type,omitempty"`
	Headers       map[string]string `json:"headers"`
	PayloadJSON   json.RawMessage   `json:"payload_json,omitempty"`
	PayloadBase64 string            `json:"payload_base64,omitempty"`
	Partition     int32             `json:"partition"`
	Offset        int64             `json:"offset"`
}

// NewLine builds the line of an event record. A body is kept as JSON only
// when it is compact JSON already, so that the line, written without HTML
// escaping, holds it byte for byte: the archive is where an event's payload
// is read from once Kafka has deleted it. Any other body is base64.
func NewLine(ev record.Event, headers map[string]string, partition int32, offset int64) Line {
	l := Line{
		EventID: ev.ID, SourceID: ev.SourceID, EventType: ev.Type, ReceivedAt: ev.ReceivedAt.UTC(),
		ContentType: ev.ContentType, Headers: headers, Partition: partition, Offset: offset,
	}
	if isCompactJSON(ev.Body) {
		l.PayloadJSON = ev.Body
	} else {
		l.PayloadBase64 = base64.StdEncoding.EncodeToString(ev.Body)
	}
	return l
}

// isCompactJSON reports whether b is valid JSON that compacting leaves as it is.
func isCompactJSON(b []byte) bool {
	if len(b) == 0 || !utf8.Valid(b) || !json.Valid(b) {
		return false
	}
	var c bytes.Buffer
	return json.Compact(&c, b) == nil && bytes.Equal(c.Bytes(), b)
}

// Encoder returns an encoder of lines to w, one a line, that keeps a JSON
// payload byte for byte (no HTML escaping).
func Encoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}

// Payload returns the event body: the JSON as sent, or the decoded bytes.
func (l Line) Payload() ([]byte, error) {
	if l.PayloadJSON != nil {
		return l.PayloadJSON, nil
	}
	return base64.StdEncoding.DecodeString(l.PayloadBase64)
}

// ParseObjectKey reads the partition and first offset back from a key.
func ParseObjectKey(key string) (partition int32, first int64, ok bool) {
	i := strings.LastIndexByte(key, '/')
	name := strings.TrimSuffix(key[i+1:], ".ndjson.gz")
	p, o, found := strings.Cut(name, "-o")
	if !found || !strings.HasPrefix(p, "p") {
		return 0, 0, false
	}
	pn, err1 := strconv.ParseInt(p[1:], 10, 32)
	on, err2 := strconv.ParseInt(o, 10, 64)
	return int32(pn), on, err1 == nil && err2 == nil
}
