package access

import (
	"strings"
	"testing"
)

func TestAdminConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     AdminConfig
		wantErr string
	}{
		{"off", AdminConfig{}, ""},
		{"emails", AdminConfig{IdP: "corp", Emails: []string{"ann@example.com"}}, ""},
		{"groups", AdminConfig{IdP: "corp", Groups: []string{"admins"}}, ""},
		{"no one", AdminConfig{IdP: "corp"}, "allows no one"},
		{"no idp", AdminConfig{Emails: []string{"ann@example.com"}}, "without an admin identity provider"},
		{"bad email", AdminConfig{IdP: "corp", Emails: []string{"ann"}}, "not an email address"},
		{"two in one", AdminConfig{IdP: "corp", Emails: []string{"ann@example.com bob@example.com"}}, "not an email address"},
		{"empty group", AdminConfig{IdP: "corp", Groups: []string{" "}}, "empty admin group"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Validate() = %v, want %q", err, tc.wantErr)
			}
		})
	}

	cfg := AdminConfig{IdP: "corp", Emails: []string{"Ann@Example.com"}, Groups: []string{"admins"}}
	for _, tc := range []struct {
		name, idp, email string
		groups           []string
		want             bool
	}{
		{"email, any case", "corp", "ann@example.COM", nil, true},
		{"group", "corp", "bob@example.com", []string{"eng", "admins"}, true},
		{"neither", "corp", "bob@example.com", []string{"eng"}, false},
		{"group case matters", "corp", "bob@example.com", []string{"Admins"}, false},
		{"other provider", "other", "ann@example.com", []string{"admins"}, false},
		{"no email", "corp", "", nil, false},
	} {
		if got := cfg.Allows(tc.idp, tc.email, tc.groups); got != tc.want {
			t.Errorf("%s: Allows(%q, %q, %q) = %v, want %v", tc.name, tc.idp, tc.email, tc.groups, got, tc.want)
		}
	}
	if (AdminConfig{}).Allows("", "", nil) {
		t.Error("the zero AdminConfig allows someone")
	}
}
