// Command kafka-setup prepares a secured Kafka cluster for deltaplane, as
// the set-up principal (a super user; its certificate in KAFKA_TLS_*): it
// creates every topic with the configs the services verify, then adds the
// ACLs of broker.Grants for admin-api, the sync-gateway and the data planes
// named by -dataplanes. Run again with more data planes to add them (both
// steps are idempotent). deployments/local/kafka-secure.sh runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/config"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9392", "comma-separated broker list")
	prefix := flag.String("prefix", "", "topic prefix (TOPIC_PREFIX of the services)")
	syncGroup := flag.String("sync-group", "deltaplane-sync-gateway", "the sync-gateway's consumer group (SYNC_GROUP)")
	dpGroupPrefix := flag.String("dp-group-prefix", "deltaplane-dp-", "the data planes' group prefix (DP_GROUP_PREFIX)")
	dataplanes := flag.String("dataplanes", "dp-1,dp-2", "comma-separated node ids of the data planes to grant")
	wait := flag.Duration("wait", time.Minute, "how long to wait for the cluster")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, broker.Brokers(*brokers), *prefix, *syncGroup, *dpGroupPrefix, broker.Brokers(*dataplanes), *wait); err != nil {
		fmt.Fprintln(os.Stderr, "kafka-setup:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, brokers []string, prefix, syncGroup, dpGroupPrefix string, dataplanes []string, wait time.Duration) error {
	var tlsEnv config.KafkaTLS
	if err := config.Load(&tlsEnv, os.Getenv); err != nil {
		return err
	}
	if !tlsEnv.Enabled() {
		return fmt.Errorf("KAFKA_TLS_CA, KAFKA_TLS_CERT, KAFKA_TLS_KEY: the set-up principal's certificate is required")
	}
	restore, err := broker.Secure(tlsEnv)
	if err != nil {
		return err
	}
	defer restore()
	if err := broker.EnsureTopics(ctx, brokers, wait, broker.SetupTopics(prefix)...); err != nil {
		return fmt.Errorf("topics: %w", err)
	}
	grants := broker.Grants(prefix, syncGroup, dpGroupPrefix, dataplanes...)
	if err := broker.CreateACLs(ctx, brokers, grants); err != nil {
		return err
	}
	if err := broker.WaitACLs(ctx, brokers, grants, wait); err != nil {
		return err
	}
	fmt.Printf("kafka-setup: %d topics, %d ACLs (data planes: %s)\n", len(broker.SetupTopics(prefix)), len(grants), strings.Join(dataplanes, ", "))
	return nil
}
