// The Go half of the fleet, written against github.com/siherrmann/queuer v1.72.0.
//
//	cd example/go_and_python/go && go mod tidy && go run .
//
// Configuration comes from the same variables as the Python side: QUEUER_DB_HOST, _PORT,
// _DATABASE, _USERNAME, _PASSWORD, _SCHEMA, and QUEUER_DB_SSLMODE (Go's default is "require":
// set it to "disable" for a local server without SSL). SIGTERM or Ctrl-C stops the worker cleanly:
// its row becomes STOPPED before the process exits.
package main

import (
	"context"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/siherrmann/queuer"
)

// SendInvoice is run by Go workers only. Python enqueues it with two positional parameters.
func SendInvoice(invoiceID int, email string) (string, error) {
	return "sent", nil
}

func main() {
	q := queuer.NewQueuer("go-invoicer", 4)
	q.AddTaskWithName(SendInvoice, "send_invoice")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q.Start(ctx, cancel)

	// Enqueue a job for the Python worker (it registered "thumbnail"). v1.72.0's AddJob takes the
	// keyed parameters second (nil: none), then the positional ones.
	if _, err := q.AddJob("thumbnail", nil, 7, 320); err != nil {
		log.Fatal(err)
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, os.Interrupt)
	select {
	case sig := <-signals:
		log.Printf("%s: stopping", sig)
	case <-ctx.Done():
	}
	if err := q.Stop(); err != nil {
		log.Printf("stop: %v", err)
	}
}
