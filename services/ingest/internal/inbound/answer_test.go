package inbound

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/relayhq/relay/pkg/ids"
)

// The hand-written ingest answer must be byte for byte what encoding/json
// would have written.
func TestAnswerMatchesEncodingJSON(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	for _, r := range []ingestResponse{
		{EventID: ids.New(ids.Event)},
		{EventID: ids.New(ids.Event), Duplicate: true},
		{EventID: `not "an" id`, Duplicate: true},
	} {
		w := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(w)
		answer(c, http.StatusAccepted, r)
		want, _ := json.Marshal(r)
		if w.Body.String() != string(want) || w.Code != http.StatusAccepted || w.Header().Get("Content-Type") != "application/json; charset=utf-8" {
			t.Fatalf("answer wrote %d %q %q, encoding/json gives %q", w.Code, w.Header().Get("Content-Type"), w.Body.String(), want)
		}
	}
}
