"""The pod contract: what the operator and the trainer pod agree on, and all the trainer imports
from the operator's package: where things are in the pod (layout), its environment (podenv), exit
codes, run.json (runfile), the engine's identity (engine), the run it works for (identity), the loss
history, likeness and sample-set bounds, log fields, how times are written (timestamps), and the
model base they share (model)."""
