package api

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/hook"
	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// Usage is the one-line description shown in help.
const Usage = "HTTP API over the dispatcher's operations"

// tag is the api role's syslog tag and program name.
const tag = "dispatcher-api"

// Commands returns the api role's commands. Started with no command the
// role serves too (see Serve).
func Commands() []*cli.Command {
	return []*cli.Command{{
		Name:  "serve",
		Usage: "serve the HTTP API (port 7445) until SIGTERM",
		Description: "Listens on api_bind:api_port (HTTPS when api_cert and api_key are set) and answers\n" +
			"/, /health, /ping, /run, /discovery, /status/REQID, /runs/REQID/events, DELETE /runs/REQID,\n" +
			"/openapi.json, /openapi-live.json and /metrics (docs/API.md). Every endpoint but /health\n" +
			"asks auth_hook; without one, api_auth_default decides (deny unless set to allow).\n" +
			"SIGTERM stops accepting connections and lets runs in flight finish (up to 60 s).",
		Flags:  Flags(),
		Action: Serve,
	}}
}

// Flags are the options of serve, also accepted by the role without a
// command.
func Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Value: config.DefaultDispatcherConfig, EnvVars: []string{"DISPATCHER_CONFIG"}, Usage: "dispatcher.conf to read"},
		&cli.IntFlag{Name: "port", Usage: "port to listen on", DefaultText: "api_port in dispatcher.conf, 7445"},
		&cli.StringFlag{Name: "bind", Usage: "address to listen on", DefaultText: "api_bind in dispatcher.conf, 127.0.0.1"},
	}
}

// Serve runs the API: the role's default action and serve.
func Serve(c *cli.Context) error {
	port, err := cmdutil.PortFlag(c)
	if err != nil {
		return err
	}
	cfg, log, closeLog, err := load(c)
	if err != nil {
		return err
	}
	defer closeLog()
	if port == 0 {
		port = cfg.APIPort
	}
	bind := cfg.APIBind
	if c.IsSet("bind") {
		bind = c.String("bind")
	}
	o, err := options(c.Context, cfg, log)
	if err != nil {
		return err
	}
	defer o.store.Close()
	eng, err := control.New(control.Options{
		Identity:       o.identity,
		ConnectTimeout: cfg.ConnectTimeout.Duration,
		ReadTimeout:    cfg.ReadTimeout.Duration,
		Parallel:       cfg.Parallel,
		MaxHosts:       cfg.MaxHosts,
		PreferRegistry: cfg.Resolve == config.ResolveRegistry,
		RunRetention:   cfg.RunRetention.Duration,
		Registry:       o.store,
		Runs:           o.store,
		Locks:          o.store,
		Revocations:    o.store,
		CA:             control.Pair{Cert: cfg.CA, Key: cfg.CAKey},
		CertDays:       cfg.CertDays,
		// No Authorize: the API asks the hook itself, with the caller's
		// address, before it calls the engine.
		Log: log,
	})
	if err != nil {
		return err
	}
	defer eng.Close()
	o.Options.Engine = eng
	srv, err := New(o.Options)
	if err != nil {
		return err
	}
	// Runs left running by a process that died (this API before a crash,
	// a killed CLI) are marked lost now, not when someone asks, and
	// before the port opens: whoever waits for the API finds them marked.
	if _, err := control.ReapLost(o.store, log); err != nil {
		log.Warn("mark the runs of dead processes lost", zap.Error(err))
	}
	addr := net.JoinHostPort(bind, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is the API already running? change api_port or api_bind in dispatcher.conf, or use --port)", addr, err)
	}
	// Agents nobody runs anything on are renewed too (SPEC §4), every
	// renew_interval; the sweep stops with the signal that starts the
	// drain.
	go eng.SweepRenewals(c.Context, cfg.RenewInterval.Duration)
	return srv.Serve(c.Context, ln)
}

// serveOptions are the Server options read from dispatcher.conf, and what
// the engine needs besides.
type serveOptions struct {
	Options
	identity control.Identity
	store    store.Store
}

// options opens the store; the caller closes it (o.store) once options
// returned without an error.
func options(ctx context.Context, cfg *config.Dispatcher, log *zap.Logger) (serveOptions, error) {
	id, err := control.LoadIdentity(cfg.Cert, cfg.Key, cfg.CA)
	if err != nil {
		return serveOptions{}, fmt.Errorf("%w: run 'dispatcher setup-ca' and 'dispatcher setup-dispatcher' first (or fix cert, key and ca in dispatcher.conf)", err)
	}
	o := serveOptions{identity: id}
	o.AllowByDefault = cfg.APIAuthDefault == "allow"
	if cfg.AuthHook != "" {
		o.Hook = &hook.Runner{Path: cfg.AuthHook, Timeout: cfg.HookTimeout.Duration, Log: log.Named("hook")}
	}
	for _, s := range cfg.APITrustedProxies {
		p, err := config.ParseAddrOrPrefix(s)
		if err != nil {
			return serveOptions{}, fmt.Errorf("api_trusted_proxies: %q: %w", s, err)
		}
		o.TrustedProxies = append(o.TrustedProxies, p)
	}
	o.MaxRequests = cfg.APIMaxRequests
	o.RunRetention = cfg.RunRetention.Duration
	o.Log = log
	if cfg.HTTPS() {
		cert, err := pki.LoadKeyPair(cfg.APICert, cfg.APIKey, pki.KeyModeGroup)
		if err != nil {
			return serveOptions{}, fmt.Errorf("api_cert, api_key: %w (fix the paths, or leave both empty for plain HTTP)", err)
		}
		o.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	// Last: nothing after it can fail and leave the store open.
	if o.store, err = cmdutil.OpenStore(ctx, cfg, log); err != nil {
		return serveOptions{}, err
	}
	o.Runs, o.Registry = o.store, o.store
	return o, nil
}

// load reads dispatcher.conf and builds the logger it asks for.
func load(c *cli.Context) (*config.Dispatcher, *zap.Logger, func() error, error) {
	return cmdutil.LoadDispatcherConfig(c, tag)
}
