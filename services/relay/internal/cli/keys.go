package cli

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// keyView is a key as the API lists it.
type keyView struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Scope      string     `json:"scope"`
	Sources    []string   `json:"sources"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	Key        string     `json:"key"`
}

func (k keyView) row() []string {
	sources, used := "all", "never"
	if len(k.Sources) > 0 {
		sources = strings.Join(k.Sources, ",")
	}
	if k.LastUsedAt != nil {
		used = k.LastUsedAt.Local().Format(time.DateTime)
	}
	return []string{k.ID, k.Name, k.Scope, sources, k.CreatedAt.Local().Format(time.DateTime), used}
}

var keyHeader = []string{"ID", "NAME", "SCOPE", "SOURCES", "CREATED", "LAST USED"}

// keysFlags is relay keys create|ls|get|revoke.
func (a *app) keysFlags(cmd *cobra.Command) verbFunc {
	var f apiFlags
	fs := a.apiFlags(cmd, &f)
	name := fs.String("name", "", "who or what holds the key (create)")
	scope := fs.String("scope", "", "admin, write (all but keys and secrets rewrap) or read (GETs only) (create)")
	sources := fs.StringSlice("source", nil, "restrict the key to this source; repeat or comma-separate for several (create)")
	limit := fs.Int("limit", 50, "how many (ls)")
	return func(ctx context.Context, verb string, pos []string) error {
		c, err := f.client()
		if err != nil {
			return err
		}
		var k keyView
		var raw []byte
		switch verb {
		case "create":
			if *name == "" || *scope == "" {
				return usageError{fmt.Errorf("relay keys create needs --name and --scope")}
			}
			body := map[string]any{"name": *name, "scope": *scope}
			if len(*sources) > 0 {
				body["sources"] = *sources
			}
			if raw, err = c.Do(ctx, "POST", "/keys", body, &k); err != nil {
				return err
			}
			if f.raw() {
				return a.printRaw(&f, raw)
			}
			a.table(keyHeader, [][]string{k.row()})
			fmt.Fprintf(a.out, "\nKey (shown this once; only its hash is kept):\n  %s\n", k.Key)
			return nil
		case "ls":
			var out struct {
				Data []keyView `json:"data"`
				Next string    `json:"next_cursor"`
			}
			if raw, err = c.Do(ctx, "GET", "/keys?"+url.Values{"limit": {strconv.Itoa(*limit)}}.Encode(), nil, &out); err != nil {
				return err
			}
			if f.raw() {
				return a.printRaw(&f, raw)
			}
			rows := [][]string{}
			for _, k := range out.Data {
				rows = append(rows, k.row())
			}
			a.table(keyHeader, rows)
			a.more(out.Next, "keys")
			return nil
		}
		if len(pos) != 1 {
			return usageError{fmt.Errorf("relay keys %s takes one KEY_ID", verb)}
		}
		path := "/keys/" + url.PathEscape(pos[0])
		if verb == "revoke" {
			if _, err := c.Do(ctx, "DELETE", path, nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "Revoked %s: it no longer works, and console sessions signed in with it have ended.\n", pos[0])
			return nil
		}
		if raw, err = c.Do(ctx, "GET", path, nil, &k); err != nil {
			return err
		}
		if f.raw() {
			return a.printRaw(&f, raw)
		}
		a.table(keyHeader, [][]string{k.row()})
		return nil
	}
}
