// Package web embeds the HTML templates and static assets, parses the
// templates once at start, and renders pages with the headers every
// sign-in page needs (no caching, no framing, no referrer, strict CSP).
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
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
	LogoURL string // optional: an https URL or a path under /static/; "" shows the name only
	Color   string // primary colour, a CSS hex colour (#rgb or #rrggbb); "" is DefaultColor
}

// DefaultColor is the primary colour when the operator sets none.
const DefaultColor = "#2458d6"

var hexColor = regexp.MustCompile(`^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$`)

// CheckColor accepts a CSS hex colour, #rgb or #rrggbb. Nothing else is
// allowed: the value is written into a stylesheet, so a named colour or a
// function would be one step from arbitrary CSS.
func CheckColor(c string) error {
	if !hexColor.MatchString(c) {
		return fmt.Errorf("the brand colour must be a CSS hex colour like #2458d6 or #25d, not %q", c)
	}
	return nil
}

// CheckLogoURL accepts an absolute https URL (the Content-Security-Policy
// then allows images from its origin) or a path under /static/ on this
// server. Anything else would be blocked by the policy or load over plain
// http, so it is refused at start rather than shown as a broken image.
func CheckLogoURL(u string) error {
	if strings.HasPrefix(u, "/") {
		clean := path.Clean(u)
		if !strings.HasPrefix(u, "/static/") || clean != u || strings.ContainsAny(u, "?#\\") {
			return fmt.Errorf("the logo URL %q must be an https URL or a clean path under /static/", u)
		}
		if _, err := fs.Stat(staticFS, strings.TrimPrefix(u, "/")); err != nil {
			return fmt.Errorf("the logo URL %q names no file this server has under /static/", u)
		}
		return nil
	}
	p, err := url.Parse(u)
	if err != nil || p.Scheme != "https" || p.Host == "" || p.User != nil || p.Opaque != "" {
		return fmt.Errorf("the logo URL %q must be an https URL (https://cdn.example.com/logo.svg) or a path under /static/", u)
	}
	return nil
}

// Validate checks the brand as Parse will use it.
func (b Brand) Validate() error {
	var errs []error
	if b.Color != "" {
		errs = append(errs, CheckColor(b.Color))
	}
	if b.LogoURL != "" {
		errs = append(errs, CheckLogoURL(b.LogoURL))
	}
	return errors.Join(errs...)
}

// logoOrigin is the origin the Content-Security-Policy must allow images
// from for the logo ("" for a logo on this server, or none).
func (b Brand) logoOrigin() string {
	if !strings.HasPrefix(b.LogoURL, "https://") {
		return ""
	}
	p, _ := url.Parse(b.LogoURL)
	return "https://" + p.Host
}

// stylesheet is /static/brand.css: the brand colour as custom properties
// that style.css uses. The Content-Security-Policy allows no inline
// styles, so the colour arrives as a stylesheet of its own, made once at
// start from a validated value. Text colours are derived so that white or
// dark text on the brand colour, and brand-coloured text on white, stay
// readable (WCAG contrast 4.5:1) whatever colour the operator picks.
func (b Brand) stylesheet() []byte {
	rgb := parseHex(b.Color)
	on := "#ffffff"
	if contrast(luminance(rgb), 1) < 4.5 && contrast(luminance(rgb), 0) > contrast(luminance(rgb), 1) {
		on = "#111418"
	}
	// Brand-coloured text and outlines on white: darken until readable.
	ink := rgb
	for i := 0; contrast(luminance(ink), 1) < 4.5 && i < 20; i++ {
		for j := range ink {
			ink[j] *= 0.9
		}
	}
	return fmt.Appendf(nil, "/* generated at start from the operator's brand colour */\n"+
		":root { --brand: %s; --brand-fg: %s; --brand-ink: %s; }\n", strings.ToLower(b.Color), on, toHex(ink))
}

func parseHex(c string) [3]float64 {
	c = strings.TrimPrefix(c, "#")
	if len(c) == 3 {
		c = string([]byte{c[0], c[0], c[1], c[1], c[2], c[2]})
	}
	var rgb [3]float64
	for i := range rgb {
		v, _ := strconv.ParseUint(c[2*i:2*i+2], 16, 8)
		rgb[i] = float64(v) / 255
	}
	return rgb
}

func toHex(rgb [3]float64) string {
	var b [3]byte
	for i, v := range rgb {
		b[i] = byte(math.Round(math.Max(0, math.Min(1, v)) * 255))
	}
	return "#" + hex.EncodeToString(b[:])
}

// luminance is the WCAG relative luminance of an sRGB colour.
func luminance(rgb [3]float64) float64 {
	var lin [3]float64
	for i, v := range rgb {
		if v <= 0.04045 {
			lin[i] = v / 12.92
		} else {
			lin[i] = math.Pow((v+0.055)/1.055, 2.4)
		}
	}
	return 0.2126*lin[0] + 0.7152*lin[1] + 0.0722*lin[2]
}

// contrast is the WCAG contrast ratio of two luminances.
func contrast(a, b float64) float64 {
	if a < b {
		a, b = b, a
	}
	return (a + 0.05) / (b + 0.05)
}

// Page is the data every template gets; Data is the page's own.
type Page struct {
	Brand Brand
	// BrandCSS is the brand stylesheet's URL, versioned by its content so
	// browsers may cache it and still see a new colour after a restart.
	BrandCSS string
	Title    string
	CSRF     string
	Data     any
	// Nav shows the links to the account page and to sign out: on every
	// page but those shown without a session (a sign-in in progress, the
	// page saying one has ended), where there is none to go to or end.
	Nav bool
}

// sessionlessPages are shown without a session (Page.Nav).
var sessionlessPages = map[string]bool{"login": true, "totp": true, "enroll": true, "new-password": true,
	"account-signed-out": true, "forgot": true, "forgot-sent": true, "reset": true,
	"alert-report": true, "alert-reported": true, "verify-email": true, "signup": true, "signup-confirm": true}

// Templates renders pages.
type Templates struct {
	Brand  Brand
	Logger *slog.Logger
	pages  map[string]*template.Template
	// brandCSS is /static/brand.css; logoOrigin is where images may come
	// from besides this server (the pages' Content-Security-Policy).
	brandCSS, brandVersion string
	logoOrigin             string
	started                time.Time
}

// Parse parses every page with the shared layout. A brand that fails
// Validate is an error.
func Parse(brand Brand, logger *slog.Logger) (*Templates, error) {
	if brand.Name == "" {
		brand.Name = "idp"
	}
	if brand.Color == "" {
		brand.Color = DefaultColor
	}
	if err := brand.Validate(); err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	brand.Color = strings.ToLower(brand.Color)
	css := brand.stylesheet()
	sum := sha256.Sum256(css)
	t := &Templates{Brand: brand, Logger: logger, pages: map[string]*template.Template{},
		brandCSS: string(css), brandVersion: hex.EncodeToString(sum[:8]),
		logoOrigin: brand.logoOrigin(), started: time.Now()}
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

// BrandCSS serves /static/brand.css, the stylesheet made from the brand
// colour. Pages link it with its version in the query, so it may be cached
// for a day: a restart with a new colour links a new URL.
func (t *Templates) BrandCSS() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "public, max-age=86400")
		w.Header().Set("ETag", `"`+t.brandVersion+`"`)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, "brand.css", t.started, strings.NewReader(t.brandCSS))
	})
}

// contentSecurityPolicy is the pages' policy. logoOrigin, when set, is the
// one other origin images may come from; formTargets are the URLs the
// page's forms may end at through redirects, besides this server.
//
// Browsers apply form-action to every redirect that follows a form's
// submission: the sign-in form posts here, is redirected to the
// authorization endpoint, and from there to the app's redirect URI, so the
// sign-in pages of an app list the origins of its redirect URIs (and the
// sign-out page the one it returns to). Every other page's forms stay on
// this server.
func contentSecurityPolicy(logoOrigin string, formTargets []string) string {
	img := "img-src 'self' data:"
	if logoOrigin != "" {
		img += " " + logoOrigin
	}
	form := "form-action 'self'"
	for _, s := range formSources(formTargets) {
		form += " " + s
	}
	return "default-src 'self'; " + img + "; frame-ancestors 'none'; " + form + "; base-uri 'none'"
}

// cspHost is a host a CSP source expression can name. An IPv6 literal
// cannot be named at all.
var cspHost = regexp.MustCompile(`^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$`)

// formSources are the CSP sources that allow the origins of targets, in
// order and each once: an http(s) URL's scheme, host and port, or just its
// scheme for an IPv6 literal, which a source cannot name. Anything else
// allows nothing.
func formSources(targets []string) []string {
	var out []string
	for _, t := range targets {
		u, err := url.Parse(t)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			continue
		}
		var src string
		switch {
		case cspHost.MatchString(u.Hostname()) && isDigits(u.Port()):
			src = u.Scheme + "://" + u.Host
		case strings.HasPrefix(u.Host, "["):
			src = u.Scheme + ":"
		default:
			continue
		}
		if !slices.Contains(out, src) {
			out = append(out, src)
		}
	}
	return out
}

// isDigits reports whether s is empty or a run of digits.
func isDigits(s string) bool {
	return strings.Trim(s, "0123456789") == ""
}

// NoStore sets the headers every authentication page sends.
func NoStore(w http.ResponseWriter) {
	noStore(w, contentSecurityPolicy("", nil))
}

func noStore(w http.ResponseWriter, csp string) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
}

// Render writes page with status. The template runs into a buffer first so
// a template error becomes a 500, not half a page. formTargets are the URLs
// (an app's redirect URIs) the page's forms may lead to through redirects,
// besides this server (see contentSecurityPolicy); most pages have none.
func (t *Templates) Render(w http.ResponseWriter, status int, page, title, csrf string, data any, formTargets ...string) {
	tpl, ok := t.pages[page]
	if !ok {
		t.Logger.Error("unknown page", "page", page)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := tpl.Execute(&buf, Page{Brand: t.Brand, BrandCSS: "/static/brand.css?v=" + t.brandVersion,
		Title: title, CSRF: csrf, Data: data, Nav: !sessionlessPages[page]}); err != nil {
		t.Logger.Error("render", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	noStore(w, contentSecurityPolicy(t.logoOrigin, formTargets))
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
