package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// settings are the configuration of idp serve: each one a flag whose
// default comes from an environment variable. Values of the wrong kind, and
// settings that are missing or invalid, are collected and reported
// together, each under the name the operator used: the flag when given on
// the command line, the variable when it came from the environment.
type settings struct {
	fs     *flag.FlagSet
	getenv func(string) string
	byFlag map[string]*setting
	errs   []error
}

// setting is one flag and its variable.
type setting struct {
	flag, env string
	fromEnv   bool  // the value came from the variable
	badEnv    error // the variable's value does not parse
}

func newSettings(fs *flag.FlagSet, getenv func(string) string) *settings {
	return &settings{fs: fs, getenv: getenv, byFlag: map[string]*setting{}}
}

// source is how the operator named a setting's value: "--flag" or "$ENV".
func (s *settings) source(flagName string) string {
	st := s.byFlag[flagName]
	if st == nil {
		return "--" + flagName
	}
	given := false
	s.fs.Visit(func(f *flag.Flag) { given = given || f.Name == flagName })
	switch {
	case given || st.env == "":
		return "--" + st.flag
	case st.fromEnv:
		return st.env
	}
	return "--" + st.flag + " / " + st.env // neither: a missing setting, either will do
}

// fail records that a setting's value is wrong.
func (s *settings) fail(flagName, format string, args ...any) {
	s.errs = append(s.errs, fmt.Errorf("%s: %s", s.source(flagName), fmt.Sprintf(format, args...)))
}

// err returns every problem found, nil when there is none. Flags given on
// the command line win over the environment, so a bad variable whose flag
// was given is no problem.
func (s *settings) err() error {
	var all []error
	for _, st := range s.byFlag {
		given := false
		s.fs.Visit(func(f *flag.Flag) { given = given || f.Name == st.flag })
		if st.badEnv != nil && !given {
			all = append(all, fmt.Errorf("%s: %v", st.env, st.badEnv))
		}
	}
	all = append(all, s.errs...)
	if len(all) == 0 {
		return nil
	}
	return usageError{errors.Join(all...)}
}

func (s *settings) add(flagName, env string) *setting {
	st := &setting{flag: flagName, env: env}
	s.byFlag[flagName] = st
	return st
}

// usage is a flag's help with its variable named.
func usage(text, env string) string {
	if env == "" {
		return text
	}
	return text + " ($" + env + ")"
}

// String is a string setting; secret ones keep the variable's value out of
// the help text.
func (s *settings) String(name, env, def, help string, secret bool) *string {
	st := s.add(name, env)
	v := def
	if e := s.getenv(env); env != "" && e != "" {
		v, st.fromEnv = e, true
	}
	if secret {
		p := new(string)
		s.fs.StringVar(p, name, "", usage(help, env))
		if v != "" {
			*p = v
		}
		return p
	}
	return s.fs.String(name, v, usage(help, env))
}

// Bool is a boolean setting: a real flag (--require-mfa alone means true,
// --require-mfa=false false).
func (s *settings) Bool(name, env string, def bool, help string) *bool {
	st := s.add(name, env)
	v := def
	if e := s.getenv(env); env != "" && e != "" {
		b, err := strconv.ParseBool(e)
		if err != nil {
			st.badEnv = fmt.Errorf("must be true or false, not %q", e)
		} else {
			v, st.fromEnv = b, true
		}
	}
	return s.fs.Bool(name, v, usage(help, env))
}

// Duration is a positive duration setting (8h, 30m).
func (s *settings) Duration(name, env string, def time.Duration, help string) *time.Duration {
	st := s.add(name, env)
	v := def
	if e := s.getenv(env); env != "" && e != "" {
		d, err := time.ParseDuration(e)
		if err != nil || d <= 0 {
			st.badEnv = fmt.Errorf("must be a positive duration like 8h or 30m, not %q", e)
		} else {
			v, st.fromEnv = d, true
		}
	}
	p := s.fs.Duration(name, v, usage(help, env))
	return p
}

// positive checks a duration setting after parsing.
func (s *settings) positive(name string, d time.Duration) {
	if d <= 0 {
		s.fail(name, "must be a positive duration like 8h or 30m, not %s", d)
	}
}

// required records a missing value.
func (s *settings) required(name, v, what string) {
	if strings.TrimSpace(v) == "" {
		s.fail(name, "is required: %s", what)
	}
}
