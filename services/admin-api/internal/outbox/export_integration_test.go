//go:build integration

package outbox

// DrainSQL is the relay's read, for tests of its plan.
const DrainSQL = drainSQL

// DrainPlan is the planner setting of the leader's connection.
const DrainPlan = drainPlan
