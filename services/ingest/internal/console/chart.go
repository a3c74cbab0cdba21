package console

import (
	"cmp"
	"fmt"
	"html/template"
	"slices"
	"strings"
	"time"

	"github.com/relayhq/relay/pkg/counters"
)

// chart is a stacked bar chart of events per day and type, drawn as SVG on
// the server (no script), with the same figures as a table beside it.
type chart struct {
	Width, Height int
	Bars          []bar
	Legend        []series
	Max, Total    int64
}

type bar struct {
	Day      string
	X, W     int
	Total    int64
	Segments []segment
	// Label is shown under the bar: the day of the month.
	Label  string
	LabelY int
	TextX  int
}

type segment struct {
	Y, H  int
	Class string
	Title string
}

type series struct {
	Name  string
	Class string
	Total int64
	// Counts are the series' count on each of the chart's days.
	Counts []int64
}

// maxSeries is how many types the chart names; the rest are "other".
const maxSeries = 5

const (
	chartW, chartH = 700, 220
	plotTop        = 10
	plotH          = 180
)

// buildChart is the chart of the days days up to today (UTC): the types
// with the most events each a series, the others together.
func buildChart(data []counters.DayCount, today time.Time, days int) chart {
	c := chart{Width: chartW, Height: chartH}
	dayList := make([]string, days)
	index := map[string]int{}
	for i := range dayList {
		dayList[i] = today.AddDate(0, 0, i-days+1).Format(time.DateOnly)
		index[dayList[i]] = i
	}
	byType := map[string]int64{}
	for _, d := range data {
		if _, ok := index[d.Day]; ok {
			byType[d.Type] += d.Count
		}
	}
	types := make([]string, 0, len(byType))
	for t := range byType {
		types = append(types, t)
	}
	slices.SortFunc(types, func(a, b string) int { return cmp.Or(cmp.Compare(byType[b], byType[a]), cmp.Compare(a, b)) })
	seriesOf := map[string]int{}
	for i, t := range types {
		if i < maxSeries {
			seriesOf[t] = i
			c.Legend = append(c.Legend, series{Name: t, Class: fmt.Sprintf("c%d", i), Counts: make([]int64, days)})
		} else {
			if i == maxSeries {
				c.Legend = append(c.Legend, series{Name: "other types", Class: fmt.Sprintf("c%d", maxSeries), Counts: make([]int64, days)})
			}
			seriesOf[t] = maxSeries
		}
	}
	totals := make([]int64, days)
	for _, d := range data {
		i, ok := index[d.Day]
		if !ok {
			continue
		}
		s := seriesOf[d.Type]
		c.Legend[s].Counts[i] += d.Count
		c.Legend[s].Total += d.Count
		totals[i] += d.Count
		c.Total += d.Count
	}
	for _, t := range totals {
		c.Max = max(c.Max, t)
	}
	slot := chartW / days
	for i, day := range dayList {
		b := bar{Day: day, X: i*slot + slot/6, W: slot * 2 / 3, Total: totals[i], Label: day[8:], LabelY: plotTop + plotH + 18}
		b.TextX = b.X + b.W/2
		// Each segment ends where the day's running total does, so that the
		// busiest day fills the plot exactly.
		var sum int64
		y := plotTop + plotH
		for _, s := range c.Legend {
			n := s.Counts[i]
			if n == 0 {
				continue
			}
			sum += n
			top := plotTop + plotH - int(sum*plotH/c.Max)
			h := max(y-top, 1) // a day with a few events still shows them
			y -= h
			b.Segments = append(b.Segments, segment{Y: y, H: h, Class: s.Class, Title: fmt.Sprintf("%s: %d %s", day, n, s.Name)})
		}
		c.Bars = append(c.Bars, b)
	}
	return c
}

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"ts": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return ""
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		case *time.Time:
			if v == nil || v.IsZero() {
				return ""
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		}
		return ""
	},
	"join":  strings.Join,
	"human": func(s string) string { return strings.ReplaceAll(s, "_", " ") },
	"short": func(s string, n int) string {
		if len(s) <= n {
			return s
		}
		return s[:n] + "…"
	},
	"statusClass": func(code int) string {
		switch {
		case code >= 200 && code < 300:
			return "ok"
		case code == 0:
			return "err"
		case code >= 500 || code == 429:
			return "warn"
		}
		return "err"
	},
}
