package lambdaapp

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/app/dynamoapp"
	"github.com/capifcore/capif-security/shared/metrics"
	"github.com/capifcore/capif-security/shared/settings"
)

// Rotator is the signing-key rotation function (signer kms-envelope): invoked daily by its
// schedule (template.yaml), each invocation is one envelope.Manager.Scheduled run: a first key
// on an empty set, a successor when the signing key is older than CAPIF_KEY_ROTATION_DAYS, and
// the records of keys that left the JWKS dropped. It makes no AWS call at init.
type Rotator struct {
	cfg    settings.Config
	logger *slog.Logger
	keys   app.KeyRotation
}

// RotationReport is what a run did (the invocation's result).
type RotationReport struct {
	Published string `json:"published,omitempty"` // the kid of the key it published
	Pruned    bool   `json:"pruned"`              // whether it dropped retired records
}

// NewRotator builds the rotation function without calling AWS; rotation is kmsapp.Rotation.
func NewRotator(ctx context.Context, cfg settings.Config, rotation func(app.Input) (app.KeyRotation, error), opts Options) (*Rotator, error) {
	r := &Rotator{cfg: cfg, logger: opts.Logger}
	if r.logger == nil {
		r.logger = slog.Default()
	}
	in := app.Input{Settings: cfg, Logger: r.logger, AWS: awsProvider(r.logger, opts).Get}
	st, err := dynamoapp.Backend.Store(ctx, in)
	if err != nil {
		return nil, err
	}
	in.KeySet = st.KeySet
	if r.keys, err = rotation(in); err != nil {
		return nil, err
	}
	return r, nil
}

// Handle runs one rotation. A failure fails the invocation, so the function's Errors alarm sees
// it; the next day's run tries again.
func (r *Rotator) Handle(ctx context.Context, payload json.RawMessage) (RotationReport, error) {
	start := time.Now()
	ctx, cancel := RequestContext(ctx, r.cfg.DeadlineMargin)
	defer cancel()
	var ev scheduledEvent
	_ = json.Unmarshal(payload, &ev)
	ctx, counts := metrics.WithCounts(ctx)
	var rep RotationReport
	var err error
	rep.Published, rep.Pruned, err = r.keys.Scheduled(ctx, r.cfg.KeyRotationAge)
	attrs := []slog.Attr{slog.String("event", ev.ID), slog.String("published", rep.Published), slog.Bool("pruned", rep.Pruned),
		slog.Float64("durationMs", float64(time.Since(start).Microseconds())/1000)}
	emit := metrics.Emitter{Logger: r.logger, Namespace: r.cfg.MetricsNamespace}
	if err != nil {
		emit.Emit(ctx, slog.LevelError, "key rotation failed", append(attrs, slog.String("error", err.Error())), counts.Metrics()...)
		return rep, err
	}
	emit.Emit(ctx, slog.LevelInfo, "key rotation run", attrs, counts.Metrics()...)
	return rep, nil
}

// MainRotator runs the rotation function: start, NewRotator and the Lambda runtime loop.
func MainRotator(rotation func(app.Input) (app.KeyRotation, error)) {
	set, logger := start(settings.Rotator, "rotator")
	r, err := NewRotator(context.Background(), set, rotation, Options{Logger: logger})
	if err != nil {
		exit(logger, "init", err)
	}
	lambda.Start(r.Handle)
}
