"""In-pod runtime of the fluxlora trainer image: prepare, run, report."""
