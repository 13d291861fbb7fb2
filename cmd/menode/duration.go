package main

import (
	"fmt"
	"reflect"
	"time"

	"github.com/alecthomas/kong"

	"github.com/menode/menode/cmd/internal/duration"
)

// durationMapper reads every time.Duration flag, from the command line, the
// environment or the config file: Go's form (90s, 5m) or a bare number of
// seconds (60), as MegaEngine writes its settings.
var durationMapper = kong.TypeMapper(reflect.TypeFor[time.Duration](), kong.MapperFunc(
	func(ctx *kong.DecodeContext, target reflect.Value) error {
		t, err := ctx.Scan.PopValue("duration")
		if err != nil {
			return err
		}
		var d time.Duration
		switch v := t.Value.(type) {
		case string:
			d, err = duration.Parse(v)
		case int64: // a TOML integer: seconds
			d, err = duration.Seconds(float64(v))
		case float64:
			d, err = duration.Seconds(v)
		default:
			err = fmt.Errorf("%v is not a duration (e.g. 30s, 5m, or a number of seconds)", t.Value)
		}
		if err != nil {
			return err
		}
		target.SetInt(int64(d))
		return nil
	}))

// String writes a size the way it is read: with the largest unit that
// divides it (10GiB, 512KiB, 0).
func (b byteSize) String() string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.mult == 0 {
			return fmt.Sprintf("%d%s", int64(b)/u.mult, u.suffix)
		}
	}
	return fmt.Sprint(int64(b))
}
