package lambdaapp

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/capifcore/capif-security/shared/app"
	"github.com/capifcore/capif-security/shared/metrics"
	"github.com/capifcore/capif-security/shared/security"
	"github.com/capifcore/capif-security/shared/settings"
)

// Worker is the notification delivery function: not an operation of the API, but the
// at-least-once half of Revoke_Authorization. Its schedule (template.yaml) invokes it every
// minute with an EventBridge event, whose content does not matter; each invocation is one
// delivery run (security.Service.DeliverDue) over the outbox records that are due, bounded by
// the Lambda deadline minus the deadline margin. Like the API functions it opens the app at
// init without any AWS call.
type Worker struct {
	cfg    settings.Config
	logger *slog.Logger
	app    *app.App
	ccf    *ccf
}

// NewWorker builds the delivery function without calling AWS.
func NewWorker(ctx context.Context, cfg settings.Config, opts Options) (*Worker, error) {
	w := &Worker{cfg: cfg, logger: opts.Logger}
	if w.logger == nil {
		w.logger = slog.Default()
	}
	a, id, err := openApp(ctx, cfg, w.logger, opts, awsProvider(w.logger, opts), nil)
	if err != nil {
		return nil, err
	}
	w.app, w.ccf = a, id
	if !id.configured() {
		w.logger.Warn("no CCF certificate (CcfCertificateUri): revocations are not pushed to AEFs")
	}
	return w, nil
}

// Close releases the adapters (tests).
func (w *Worker) Close() error { return w.app.Close() }

// scheduledEvent is what an EventBridge rule or schedule sends; only its id is logged.
type scheduledEvent struct {
	ID string `json:"id"`
}

// Handle runs one delivery run. It fails (so the function's Errors metric and its alarm see it)
// only when the outbox cannot be read; undelivered notifications are the records' business.
func (w *Worker) Handle(ctx context.Context, payload json.RawMessage) (security.DeliveryReport, error) {
	start := time.Now()
	ctx, cancel := RequestContext(ctx, w.cfg.DeadlineMargin)
	defer cancel()
	var ev scheduledEvent
	_ = json.Unmarshal(payload, &ev) // any payload starts a run
	ctx, counts := metrics.WithCounts(ctx)
	rep, err := w.app.Service.DeliverDue(ctx)
	attrs := []slog.Attr{slog.String("event", ev.ID), slog.Int("claimed", rep.Claimed), slog.Int("delivered", rep.Delivered),
		slog.Int("retried", rep.Retried), slog.Int("deadLettered", rep.DeadLettered),
		slog.Float64("durationMs", float64(time.Since(start).Microseconds())/1000)}
	emit := metrics.Emitter{Logger: w.logger, Namespace: w.cfg.MetricsNamespace}
	if err != nil {
		emit.Emit(ctx, slog.LevelError, "delivery run failed", append(attrs, slog.String("error", err.Error())), counts.Metrics()...)
		return rep, err
	}
	// One line per run: the run's outcomes as metrics (alarms watch NotificationsDeadLettered),
	// and the backlog it leaves as gauges (alarms watch OutboxOldestAEFSeconds and
	// OutboxDeadLetters).
	ms := counts.Metrics()
	if w.ccf.configured() {
		// Read once per execution environment, so the days left are published (and warned
		// about) even when no push needed the certificate.
		if _, err := w.ccf.identity(ctx); err != nil {
			attrs = append(attrs, slog.String("ccfCertificateError", err.Error()))
		}
	}
	if b, err := w.app.Service.Backlog(ctx); err != nil {
		attrs = append(attrs, slog.String("backlogError", err.Error()))
	} else {
		var days *float64
		if d, ok := w.ccf.daysLeft(time.Now()); ok {
			days = &d
		}
		ms = append(ms, app.BacklogMetrics(b, days)...)
	}
	emit.Emit(ctx, slog.LevelInfo, "delivery run", attrs, ms...)
	return rep, nil
}

// MainWorker runs the delivery function: start, NewWorker and the Lambda runtime loop, with
// backends (kmsapp.CCF, to push to AEFs).
func MainWorker(backends ...app.Backend) {
	set, logger := start(settings.Worker, "worker")
	w, err := NewWorker(context.Background(), set, Options{Logger: logger, Backends: backends})
	if err != nil {
		exit(logger, "init", err)
	}
	lambda.Start(w.Handle)
}
