// Package web embeds the HTML templates and static assets, parses the
// templates once at start, and renders pages with the headers every
// sign-in page needs (no caching, no framing, no referrer, strict CSP).
package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Static serves /static/.
func Static() http.Handler {
	sub, _ := fs.Sub(staticFS, "static")
	return http.StripPrefix("/static/", http.FileServer(http.FS(sub)))
}

// Brand is what an operator may change about the pages' look.
type Brand struct {
	Name    string // product name shown in titles and the header
	LogoURL string // optional; "" shows the name only
	Color   string // primary colour, a CSS colour value
}

// Page is the data every template gets; Data is the page's own.
type Page struct {
	Brand Brand
	Title string
	CSRF  string
	Data  any
}

// Templates renders pages.
type Templates struct {
	Brand  Brand
	Logger *slog.Logger
	pages  map[string]*template.Template
}

// Parse parses every page with the shared layout.
func Parse(brand Brand, logger *slog.Logger) (*Templates, error) {
	if brand.Name == "" {
		brand.Name = "idp"
	}
	if brand.Color == "" {
		brand.Color = "#2458d6"
	}
	t := &Templates{Brand: brand, Logger: logger, pages: map[string]*template.Template{}}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	funcs := template.FuncMap{
		"join": strings.Join,
		// otpauth marks an authenticator URI safe for href; html/template
		// would otherwise neutralise the unfamiliar scheme.
		"otpauth": func(s string) template.URL {
			if strings.HasPrefix(s, "otpauth://") {
				return template.URL(s)
			}
			return ""
		},
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		tpl, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("web: parse %s: %w", n, err)
		}
		t.pages[base] = tpl
	}
	return t, nil
}

// Names lists the parsed pages.
func (t *Templates) Names() []string {
	var out []string
	for n := range t.pages {
		out = append(out, n)
	}
	return out
}

// NoStore sets the headers every authentication page sends.
func NoStore(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self' http: https:; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
}

// Render writes page with status. The template runs into a buffer first so
// a template error becomes a 500, not half a page.
func (t *Templates) Render(w http.ResponseWriter, status int, page, title, csrf string, data any) {
	tpl, ok := t.pages[page]
	if !ok {
		t.Logger.Error("unknown page", "page", page)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := tpl.Execute(&buf, Page{Brand: t.Brand, Title: title, CSRF: csrf, Data: data}); err != nil {
		t.Logger.Error("render", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	NoStore(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// ErrorData is the error page's data.
type ErrorData struct {
	Message string // what happened
	Hint    string // what to do
}

// Error renders the error page: a clear message, never a redirect.
func (t *Templates) Error(w http.ResponseWriter, status int, message, hint string) {
	t.Render(w, status, "error", http.StatusText(status), "", ErrorData{Message: message, Hint: hint})
}
