package configs

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"reflect"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// ErrUnknownKey is wrapped by the [ConfigError] of a key databus does not
// know.
var ErrUnknownKey = errors.New("unknown key (see configs/databus.example.yaml for every key)")

// Flags registers one flag per configuration key on fs and returns a
// function that reports the flags that were set, as key/value pairs.
func Flags(fs *flag.FlagSet) func() map[string]string {
	vals := map[string]*string{}
	for _, k := range Keys() {
		v := new(string)
		vals[k] = v
		fs.StringVar(v, FlagName(k), "", "sets "+k+" (env "+EnvName(k)+")")
	}
	return func() map[string]string {
		set := map[string]string{}
		fs.Visit(func(f *flag.Flag) {
			for k, v := range vals {
				if FlagName(k) == f.Name {
					set[k] = *v
				}
			}
		})
		return set
	}
}

// Load builds the configuration from the defaults, the YAML file (when
// path is not empty), DATABUS_* environment variables from environ, and
// flag values, each overriding the one before. Every problem is a
// [*ConfigError] naming the key.
func Load(path string, environ []string, flags map[string]string) (Config, error) {
	k := koanf.New(".")
	known := defaultsMap()
	set := map[string]bool{}
	if err := k.Load(confmap.Provider(known, "."), nil); err != nil {
		return Config{}, fmt.Errorf("loading defaults: %w", err)
	}
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return Config{}, &ConfigError{Key: "--config", Value: path, Err: fmt.Errorf("cannot read config file: %w", err)}
		}
		fk := koanf.New(".")
		if err := fk.Load(file.Provider(path), yaml.Parser()); err != nil {
			return Config{}, &ConfigError{Key: "--config", Value: path, Err: fmt.Errorf("parsing YAML: %w", err)}
		}
		for _, key := range fk.Keys() {
			if _, ok := known[key]; !ok {
				return Config{}, &ConfigError{Key: key, Err: fmt.Errorf("%w in %s", ErrUnknownKey, path)}
			}
		}
		for _, key := range fk.Keys() {
			set[key] = true
		}
		if err := k.Merge(fk); err != nil {
			return Config{}, fmt.Errorf("merging %s: %w", path, err)
		}
	}
	envKeys := map[string]string{}
	for key := range known {
		envKeys[EnvName(key)] = key
	}
	over := map[string]any{}
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		key, ok := envKeys[name]
		if !ok {
			return Config{}, &ConfigError{Key: name, Err: fmt.Errorf("unknown environment variable: databus reads only %s<KEY> for the keys in configs/databus.example.yaml", EnvPrefix)}
		}
		over[key] = val
	}
	for key, val := range flags {
		if _, ok := known[key]; !ok {
			return Config{}, &ConfigError{Key: key, Err: ErrUnknownKey}
		}
		over[key] = val
	}
	for key, val := range over {
		set[key] = true
		if _, isList := known[key].([]string); isList {
			over[key] = splitList(val.(string))
		}
	}
	if err := k.Load(confmap.Provider(over, "."), nil); err != nil {
		return Config{}, fmt.Errorf("loading overrides: %w", err)
	}

	cfg := Config{set: set}
	// All keys at once; one at a time only to name a bad value's key (it
	// takes a few milliseconds, every command start).
	if err := decode(k, "", &cfg); err != nil {
		cfg = Config{set: set}
		for _, key := range Keys() {
			if err := decodeKey(k, key, &cfg); err != nil {
				return Config{}, &ConfigError{Key: key, Value: fmt.Sprint(k.Get(key)), Err: err}
			}
		}
		return Config{}, fmt.Errorf("decoding the configuration: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func splitList(s string) []string {
	out := []string{}
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// decodeKey decodes one key into its field, so that a bad value names its
// key.
func decodeKey(k *koanf.Koanf, key string, cfg *Config) error {
	sub := koanf.New(".")
	if err := sub.Set(key, k.Get(key)); err != nil {
		return err
	}
	return decode(sub, "", cfg)
}

// decode decodes what k holds under path into cfg.
func decode(k *koanf.Koanf, path string, cfg *Config) error {
	return k.UnmarshalWithConf(path, cfg, koanf.UnmarshalConf{
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook: mapstructure.ComposeDecodeHookFunc(
				mapstructure.StringToTimeDurationHookFunc(),
				mapstructure.StringToSliceHookFunc(","),
			),
			WeaklyTypedInput: true,
			Result:           cfg,
			TagName:          "koanf",
		},
	})
}

// Changed returns the keys whose values differ between a and b, sorted.
func Changed(a, b Config) []string {
	va, vb := flatten(reflect.ValueOf(a), ""), flatten(reflect.ValueOf(b), "")
	var out []string
	for _, k := range Keys() {
		if va[k] != vb[k] {
			out = append(out, k)
		}
	}
	return out
}

// flatten maps every key of the struct v (fields tagged koanf) to its
// value printed.
func flatten(v reflect.Value, prefix string) map[string]string {
	out := map[string]string{}
	t := v.Type()
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("koanf")
		if tag == "" {
			continue
		}
		f := v.Field(i)
		if f.Kind() == reflect.Struct {
			maps.Copy(out, flatten(f, prefix+tag+"."))
			continue
		}
		out[prefix+tag] = fmt.Sprint(f.Interface())
	}
	return out
}
