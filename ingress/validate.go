package ingress

import (
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
)

// validate checks every value of c that its field's `check` tag constrains,
// walking the structs and lists within. It returns the first bad value's path, in
// the form Parse names keys ("rule 2: originRequest: proxyPort"), and why it is
// bad; "", "" if all are fine. Parse maps the path to the line it was written on;
// New reports it as is.
func (c *Config) validate() (where, why string) {
	return validateStruct("", reflect.ValueOf(c).Elem())
}

func validateStruct(where string, v reflect.Value) (string, string) {
	t := v.Type()
	for i := range t.NumField() {
		f, fv := t.Field(i), v.Field(i)
		w := join(where, yamlName(f))
		if rule := f.Tag.Get("check"); rule != "" {
			if why := checkValue(rule, fv); why != "" {
				return w, why
			}
		}
		if fv.Kind() == reflect.Pointer {
			if fv.IsNil() {
				continue
			}
			fv = fv.Elem()
		}
		switch {
		case fv.Kind() == reflect.Struct:
			if w, why := validateStruct(w, fv); why != "" {
				return w, why
			}
		case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct:
			form := formOf(fv.Type().Elem())
			for j := range fv.Len() {
				if w, why := validateStruct(form.item(w, j+1), fv.Index(j)); why != "" {
					return w, why
				}
			}
		}
	}
	return "", ""
}

// checkValue checks v (through a pointer, and item by item for a list) against
// rule, one of the checks below; "oneof=a b c" allows the listed words. An unset
// (nil) value passes. It returns why v is bad, or "".
func checkValue(rule string, v reflect.Value) string {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return ""
		}
		return checkValue(rule, v.Elem())
	case reflect.Slice:
		for i := range v.Len() {
			if why := checkValue(rule, v.Index(i)); why != "" {
				return why
			}
		}
		return ""
	}
	if words, ok := strings.CutPrefix(rule, "oneof="); ok {
		allowed := strings.Fields(words)
		if s := v.String(); s != "" && !slices.Contains(allowed, s) {
			return fmt.Sprintf("%q is not one of %s", s, strings.Join(allowed, ", "))
		}
		return ""
	}
	switch rule {
	case "nonnegative":
		if v.Int() < 0 {
			return "must not be negative"
		}
	case "port": // a listen port; 0 picks one
		if p := v.Int(); p < 0 || p > 65535 {
			return fmt.Sprintf("%d is not a port (0 to 65535)", p)
		}
	case "destport":
		if p := v.Int(); p < 1 || p > 65535 {
			return fmt.Sprintf("%d is not a port (1 to 65535)", p)
		}
	case "proxytype":
		if s := v.String(); s != "" && s != "socks" {
			return fmt.Sprintf("%q is not a proxy type; want \"socks\" or nothing", s)
		}
	case "host":
		if s := v.String(); strings.ContainsAny(s, " \t\r\n/") {
			return fmt.Sprintf("%q is not a host", s)
		}
	case "ip":
		if s := v.String(); s != "" {
			if _, err := netip.ParseAddr(s); err != nil {
				return fmt.Sprintf("%q is not an IP address", s)
			}
		}
	case "hostport":
		if s := v.String(); s != "" {
			if _, _, err := net.SplitHostPort(s); err != nil {
				return fmt.Sprintf("%q is not host:port", s)
			}
		}
	case "keyvalue":
		if s := v.String(); !strings.Contains(s, "=") || strings.HasPrefix(s, "=") {
			return fmt.Sprintf("%q is not KEY=VALUE", s)
		}
	case "prefix":
		s := v.String()
		if s == "" {
			return "required, like 10.0.0.0/8"
		}
		if _, err := netip.ParsePrefix(s); err != nil {
			return fmt.Sprintf("%q is not a CIDR prefix like 10.0.0.0/8", s)
		}
	default:
		panic("ingress: unknown check " + rule)
	}
	return ""
}
