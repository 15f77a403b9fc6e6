"""The planner (pure): from what the API says of a run (its spec facts, Jobs, Pods, Kueue's
Workloads) to its status, the actions to take and the events to post (status), with Kueue's view of
a Job (queueing), the events coalesced (events) and the facts of a run body (facts)."""
