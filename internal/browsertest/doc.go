// Package browsertest holds the end-to-end tests that drive a real browser
// (Debian's Chromium, headless, through chromedp) against a provider
// instance and demo apps (package demoapp): what a person sees and does,
// from the first sign-in with forced 2FA enrollment to single sign-out.
//
// The tests need /usr/bin/chromium (Debian package chromium) and fail
// without it; they never download a browser. IDP_SCREENSHOTS=dir saves PNG
// screenshots of the main pages into dir, for the docs.
package browsertest
