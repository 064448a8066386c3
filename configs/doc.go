// Package configs loads and validates the databus configuration.
//
// Settings come from, in increasing precedence: built-in defaults
// ([Defaults]), one YAML file, DATABUS_* environment variables
// ([EnvName]) and command-line flags ([FlagName]). Every key is listed
// with its default in databus.example.yaml beside this file. An unknown key
// or a bad value is a [*ConfigError] that names the key; commands exit
// with status 2 on it.
package configs
