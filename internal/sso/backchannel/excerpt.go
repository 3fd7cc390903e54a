package backchannel

import (
	"bytes"
	"mime"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
)

// maxExcerpt is how many characters of an app's error answer an
// administrator is shown (in last_error): enough for "invalid_request:
// unknown sid", not for a page.
const maxExcerpt = 120

// excerpt is what administrators see of an app's error answer, in the
// console and the admin API: a short line of its text. An HTML page gives
// its text without markup, scripts or styles; a body that is not text
// gives nothing. The logout token and anything like a JWT are cut out,
// and so are control characters (a terminal's escapes), invisible and
// direction-changing characters (which can make a line read as something
// it is not); whitespace collapses to single spaces.
func excerpt(body []byte, contentType, token string) string {
	if contentType == "" {
		contentType = http.DetectContentType(body)
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	var text string
	switch {
	case mt == "text/html" || mt == "application/xhtml+xml":
		text = htmlText(body)
	case strings.HasPrefix(mt, "text/"), mt == "application/json", mt == "application/xml",
		strings.HasSuffix(mt, "+json"), strings.HasSuffix(mt, "+xml"):
		text = string(body)
	default:
		return ""
	}
	if token != "" {
		text = strings.ReplaceAll(text, token, "[logout_token]")
	}
	s := []rune(oneLine(jwtLike.ReplaceAllString(strings.ToValidUTF8(text, "\uFFFD"), "[jwt]")))
	if len(s) > maxExcerpt {
		return strings.TrimSpace(string(s[:maxExcerpt-1])) + "…"
	}
	return string(s)
}

// htmlText is the text a browser would show of page, roughly: what is
// between the tags, outside scripts and styles, entities decoded.
func htmlText(page []byte) string {
	z := html.NewTokenizer(bytes.NewReader(page))
	var b strings.Builder
	skip := 0 // inside <script> or <style>
	for {
		switch z.Next() {
		case html.ErrorToken: // the end, or a page the tokenizer gives up on
			return b.String()
		case html.StartTagToken:
			if name, _ := z.TagName(); isHidden(name) {
				skip++
			}
			b.WriteByte(' ')
		case html.EndTagToken:
			if name, _ := z.TagName(); isHidden(name) && skip > 0 {
				skip--
			}
			b.WriteByte(' ')
		case html.TextToken:
			if skip == 0 {
				b.Write(z.Text())
			}
		}
	}
}

func isHidden(tag []byte) bool {
	return string(tag) == "script" || string(tag) == "style"
}

// oneLine replaces every control, format (invisible, bidirectional) and
// space character of s with a space and collapses runs of them.
func oneLine(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}
