package shield

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/corazawaf/coraza/v3/types"

	"github.com/adit-dev/adit/edge/layer"
)

// crsTestHeader is the header the Core Rule Set's regression suite
// (go-ftw, in log mode) marks its requests with.
const crsTestHeader = "X-Crs-Test"

// errorLog writes the WAF's matches in ModSecurity's error-log shape, one
// line per matched rule, as Coraza's MatchedRule.ErrorLog renders it:
//
//	[client "1.2.3.4"] Coraza: Warning. SQL Injection Attack ... [file "..."] [line "..."]
//	[id "942100"] [rev ""] [msg "..."] [data "..."] [severity "critical"] ...
//	[hostname "..."] [uri "/?id=1'"] [unique_id "REQUEST-ID"]
//
// A request that carries an X-CRS-Test header gets one more line after
// its rules', naming the header's value and the request ID, which is the
// marker go-ftw looks for between the requests of a test.
type errorLog struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func newErrorLog(w io.Writer) *errorLog { return &errorLog{w: bufio.NewWriter(w)} }

// rule is Coraza's error callback.
func (l *errorLog) rule(mr types.MatchedRule) {
	line := mr.ErrorLog()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.WriteString(time.Now().UTC().Format("[2006-01-02T15:04:05.000000Z] "))
	l.w.WriteString(strings.ReplaceAll(line, "\n", " "))
	l.w.WriteByte('\n')
	l.w.Flush()
}

// maxMarker bounds the X-CRS-Test value written to the log.
const maxMarker = 256

// marker writes the X-CRS-Test line of a request.
func (l *errorLog) marker(req *layer.Request, value string) {
	if len(value) > maxMarker {
		value = value[:maxMarker]
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.WriteString(time.Now().UTC().Format("[2006-01-02T15:04:05.000000Z] "))
	l.w.WriteString(`[client ` + strconv.Quote(req.ClientIP.String()) + `] adit: X-CRS-Test ` + sanitize(value) +
		` [X-CRS-Test ` + strconv.Quote(value) + `] [hostname ` + strconv.Quote(req.Host) + `] [unique_id ` + strconv.Quote(req.ID) + "]\n")
	l.w.Flush()
}

// sanitize keeps a header value on one line.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
