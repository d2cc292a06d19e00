// Command coredns is the cluster DNS of the local cluster: CoreDNS, built from its Go module
// with only the plugins the local cluster's Corefile uses (the full build carries every cloud
// provider's SDK).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	// Plugin order, as in CoreDNS's plugin.cfg.
	dnsserver.Directives = []string{"bind", "errors", "health", "ready", "kubernetes"}
}

func main() { coremain.Run() }
