package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/deltaplane/deltaplane/e2e/cluster"
)

// changes makes single-entity changes at a fixed rate and measures, per
// change, the time from the admin-api's 2xx to applied on every data plane
// and the bytes each data plane fetched for it.
func (b *bench) changes(ctx context.Context, c *cluster.Cluster, dps []*cluster.Dataplane, mr *modeResult) error {
	return b.changesWith(ctx, c, dps, mr, b.cfg.Entities, b.cfg.Changes, b.cfg.Rate)
}

// changesWith makes count changes at rate to a configuration of entities.
func (b *bench) changesWith(ctx context.Context, c *cluster.Cluster, dps []*cluster.Dataplane, mr *modeResult, entities, count int, rate float64) error {
	cpu0, alloc0 := make([]time.Duration, len(dps)), make([]float64, len(dps))
	before := make([]status, len(dps))
	for i, dp := range dps {
		cpu0[i], _ = procCPU(dp.Pid())
		mr.LifePeakRSS = max(mr.LifePeakRSS, procPeakRSS(dp.Pid()))
		resetPeakRSS(dp.Pid())
		alloc0[i], _ = metric(ctx, dp.Status+"/metrics", "go_memstats_alloc_bytes_total")
		st, err := getStatus(ctx, dp.Status+"/status")
		if err != nil {
			return err
		}
		before[i] = st
	}
	broker0, _ := procCPU(b.cfg.BrokerPID)
	ch := newChanger(c, entities)
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	var bytesPer, recordsPer []float64
	for i := range count {
		<-tick.C
		if err := ch.next(ctx, i); err != nil {
			mr.ChangeErrors++
			mr.Notes = appendOnce(mr.Notes, err.Error())
			continue
		}
		t0 := time.Now()
		after, at, errs := make([]status, len(dps)), make([]time.Time, len(dps)), make([]error, len(dps))
		var wg sync.WaitGroup
		for j, dp := range dps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				after[j], at[j], errs[j] = waitVersion(ctx, dp, before[j].Version+1, 30*time.Second)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		var worst time.Duration
		for j := range dps {
			worst = max(worst, at[j].Sub(t0))
			bytesPer = append(bytesPer, after[j].BytesConsumed-before[j].BytesConsumed)
			recordsPer = append(recordsPer, after[j].RecordsConsumed-before[j].RecordsConsumed)
			before[j] = after[j]
		}
		mr.propagationSamples = append(mr.propagationSamples, ms(worst))
		mr.Changes++
	}
	mr.Propagation = summarize(mr.propagationSamples)
	if len(bytesPer) > 0 {
		mr.BytesPerChange = median(bytesPer)
		mr.RecordsPerChange = median(recordsPer)
	}
	var cpu time.Duration
	var alloc float64
	for i, dp := range dps {
		c1, _ := procCPU(dp.Pid())
		a1, _ := metric(ctx, dp.Status+"/metrics", "go_memstats_alloc_bytes_total")
		cpu += c1 - cpu0[i]
		alloc += a1 - alloc0[i]
		mr.PeakRSS = max(mr.PeakRSS, procPeakRSS(dp.Pid()))
	}
	if b.cfg.BrokerPID > 0 && mr.Changes > 0 {
		broker1, _ := procCPU(b.cfg.BrokerPID)
		mr.BrokerCPUPerChng = ms(broker1-broker0) / float64(mr.Changes)
	}
	if mr.Changes > 0 {
		per := float64(mr.Changes * len(dps))
		mr.CPUPerChangeMs = ms(cpu) / per
		mr.AllocPerChange = alloc / per
	}
	return nil
}

// changer cycles through the kinds of single-entity change a user makes:
// patch a route, add a plugin, remove it, rotate a credential.
type changer struct {
	c       *cluster.Cluster
	units   int
	plugins []string
}

// units is the number of generated units (see declarative).
func units(entities int) int { return max(1, entities/10) }

func newChanger(c *cluster.Cluster, entities int) *changer {
	return &changer{c: c, units: units(entities)}
}

func (ch *changer) next(ctx context.Context, i int) error {
	unit := i / 4 % ch.units
	route := fmt.Sprintf("svc-%06d-r1", unit)
	switch i % 4 {
	case 0:
		return expect(ctx, 200, "PATCH", ch.c.Admin+"/routes/"+route,
			fmt.Sprintf(`{"paths":["/svc-%06d/v1","/changed/%d"]}`, unit, i))
	case 1: // r2 has no plugin of its own
		body, err := expectBody(ctx, 201, "POST", fmt.Sprintf("%s/routes/svc-%06d-r2/plugins", ch.c.Admin, unit),
			`{"name":"rate-limiting","instance_name":"bench-`+fmt.Sprint(i)+`","config":{"second":50,"policy":"local"}}`)
		if err != nil {
			return err
		}
		var p struct{ ID string }
		json.Unmarshal(body, &p)
		ch.plugins = append(ch.plugins, p.ID)
		return nil
	case 2:
		if len(ch.plugins) == 0 {
			return errors.New("no plugin to remove")
		}
		id := ch.plugins[len(ch.plugins)-1]
		ch.plugins = ch.plugins[:len(ch.plugins)-1]
		return expect(ctx, 204, "DELETE", ch.c.Admin+"/plugins/"+id, "")
	default:
		consumer := fmt.Sprintf("user-%06d", unit)
		body, err := expectBody(ctx, 200, "GET", ch.c.Admin+"/consumers/"+consumer+"/key-auth", "")
		if err != nil {
			return err
		}
		var list struct{ Data []struct{ ID string } }
		if json.Unmarshal(body, &list); len(list.Data) == 0 {
			return fmt.Errorf("consumer %s has no key-auth credential", consumer)
		}
		return expect(ctx, 200, "PATCH", ch.c.Admin+"/key-auths/"+list.Data[0].ID, fmt.Sprintf(`{"key":"rotated-%d-%d"}`, unit, i))
	}
}
