"""The spec core (pure): from a run document to what runs. Profiles and the engine settings they
hold, optimizers, the validation rules, the admin's policy, evaluation and sample prompts, the
rendered sd-scripts command (sdscripts, render) and the Kubernetes objects of a run (manifests)."""
