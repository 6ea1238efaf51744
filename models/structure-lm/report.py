"""Training curves of `mdllm train` runs as a Markdown report.

    python models/structure-lm/report.py RUN_DIR [RUN_DIR ...] > CURVES.md

Per run: parameters (total and trained), steps, median seconds per step, the validation curve
(loss and token accuracy at every evaluation) and the training loss averaged per epoch.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def report(run_dir: Path) -> str:
    h = json.loads((run_dir / "history.json").read_text())
    train, val = h["train"], h["val"]
    rec = h.get("record", {})
    lines = [f"## {run_dir.name}", "",
             f"- command: `{rec.get('command', '?')}`",
             f"- parameters: {h['parameters']:,} total, {h['trainable_parameters']:,} trained",
             f"- windows: {rec.get('train_windows', '?')} training, {rec.get('val_windows', '?')} validation; "
             f"global batch {h['global_batch']}, {h['world_size']} process(es)",
             f"- steps: {len(train)}, median {statistics.median(e['seconds'] for e in train):.2f} s/step "
             f"({sum(e['tokens'] for e in train) / sum(e['seconds'] for e in train):.0f} target tokens/s)",
             "", "| step | epoch | val loss | val token accuracy |", "|---:|---:|---:|---:|"]
    lines += [f"| {v['step']} | {v['epoch']} | {v['val_loss']:.4f} | {v['val_accuracy']:.4f} |" for v in val]
    lines += ["", "| epoch | mean train loss |", "|---:|---:|"]
    epochs = sorted({e["epoch"] for e in train})
    for ep in epochs:
        losses = [e["loss"] for e in train if e["epoch"] == ep]
        lines.append(f"| {ep + 1} | {sum(losses) / len(losses):.4f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    dirs = [Path(a) for a in (argv if argv is not None else sys.argv[1:])]
    print("# Training curves\n")
    for d in dirs:
        print(report(d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
