"""The controller: the kopf handlers (thin), the dispatch of watch events to reconcile passes and
its work queue, the Kubernetes client, leader election, metrics, probes, and what is kept of each
watched object (snapshot)."""
