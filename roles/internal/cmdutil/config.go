package cmdutil

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store/backend"
)

// LoadDispatcherConfig reads the dispatcher.conf named by the --config flag
// and builds the logger it asks for, tagged tag (dispatcher,
// dispatcher-api, dispatcher-pairing). Warnings found while loading go to
// stderr, where the operator sees them. A missing file at the default path
// means the defaults; a missing file named with --config is an error.
func LoadDispatcherConfig(c *cli.Context, tag string) (*config.Dispatcher, *zap.Logger, func() error, error) {
	path := c.String("config")
	boot, closeBoot, err := logging.New(logging.Options{Output: logging.OutputStderr, Tag: tag, Stderr: c.App.ErrWriter})
	if err != nil {
		return nil, nil, nil, err
	}
	cfg, err := config.LoadDispatcher(path, boot)
	_ = closeBoot()
	if errors.Is(err, fs.ErrNotExist) && !c.IsSet("config") {
		cfg, err = config.DefaultDispatcher(), nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil, fmt.Errorf("config file %s does not exist: create it or leave out --config to use the defaults", path)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	log, closeLog, err := logging.New(logging.Options{Output: cfg.Log, Format: cfg.LogFormat, Tag: tag, Stderr: c.App.ErrWriter})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("set up logging: %w", err)
	}
	return cfg, log, closeLog, nil
}

// storeOpenTimeout bounds connecting to the PostgreSQL store and applying
// its migrations, on top of connect_timeout.
const storeOpenTimeout = 30 * time.Second

// OpenStore opens the state store cfg names: files in state_dir, or the
// PostgreSQL store of a postgres:// URL (connected and migrated within
// connect_timeout plus 30 s). The caller closes it.
func OpenStore(ctx context.Context, cfg *config.Dispatcher, log *zap.Logger) (store.Store, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout.Duration+storeOpenTimeout)
	defer cancel()
	return backend.Open(ctx, cfg.Store, cfg.StateDir, log)
}

// PortFlag returns the value of the --port flag: 0 when not given (the
// configuration's port applies), a usage error when outside 1-65535.
func PortFlag(c *cli.Context) (int, error) {
	port := c.Int("port")
	if port < 0 || port > 65535 {
		return 0, Usagef("--port %d: want 1-65535", port)
	}
	return port, nil
}
