"""Applications on top of the library: the demo, the ablation and the speed benchmark. They orchestrate; no method code."""
