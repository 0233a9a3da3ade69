package sdk

import (
	"reflect"
	"testing"
	"time"

	"github.com/ferrynet/ferry/sdk/internal/icepath"
)

func TestParseRelayPolicy(t *testing.T) {
	for _, p := range []RelayPolicy{RelayAuto, RelayNever, RelayAlways} {
		got, err := ParseRelayPolicy(p.String())
		if err != nil || got != p {
			t.Errorf("ParseRelayPolicy(%q) = %v, %v; want %v", p.String(), got, err, p)
		}
	}
	if p, err := ParseRelayPolicy(""); err != nil || p != RelayAuto {
		t.Errorf(`ParseRelayPolicy("") = %v, %v; want auto`, p, err)
	}
	if _, err := ParseRelayPolicy("sometimes"); err == nil {
		t.Error("bad policy accepted")
	}
	want := map[RelayPolicy]icepath.Policy{RelayAuto: icepath.PolicyAuto, RelayNever: icepath.PolicyNever, RelayAlways: icepath.PolicyAlways}
	for p, ip := range want {
		if p.internal() != ip {
			t.Errorf("%v converts to icepath policy %d, want %d", p, p.internal(), ip)
		}
	}
}

// TestICETimingConvertsEveryField gives every field of ICETiming its own
// value and checks that icepath.Timing gets each under the same name, so a
// field added to one type and not carried over fails here.
func TestICETimingConvertsEveryField(t *testing.T) {
	var in ICETiming
	v := reflect.ValueOf(&in).Elem()
	for i := range v.NumField() {
		v.Field(i).SetInt(int64(time.Duration(i+1) * time.Millisecond))
	}
	out := reflect.ValueOf(in.internal())
	if out.NumField() != v.NumField() {
		t.Fatalf("ICETiming has %d fields, icepath.Timing %d", v.NumField(), out.NumField())
	}
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		f := out.FieldByName(name)
		if !f.IsValid() {
			t.Errorf("icepath.Timing has no field %s", name)
			continue
		}
		if f.Int() != v.Field(i).Int() {
			t.Errorf("%s: converted to %v, want %v", name, time.Duration(f.Int()), time.Duration(v.Field(i).Int()))
		}
	}
}
