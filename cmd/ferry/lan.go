package main

import (
	"flag"
	"fmt"

	"github.com/ferrynet/ferry/sdk"
)

// registerLAN adds the --lan flag to a command that runs a node.
func registerLAN(fs *flag.FlagSet, mode *string) {
	fs.StringVar(mode, "lan", "auto", "find peers on the local network by mDNS: auto (on when no --rendezvous), on or off")
}

// lanOptions turns --lan into node options.
func lanOptions(mode string) ([]sdk.NodeOption, error) {
	switch mode {
	case "auto":
		return nil, nil
	case "on":
		return []sdk.NodeOption{sdk.WithLAN(true)}, nil
	case "off":
		return []sdk.NodeOption{sdk.WithLAN(false)}, nil
	}
	return nil, fmt.Errorf("--lan %q: want auto, on or off", mode)
}
