"""The verdict: one plain sentence and a short table, read in ten seconds, from metrics.json.

Every row has a traffic light: ``green`` (looks like the protein's own MD), ``amber`` (look closer)
or ``red`` (not the protein as simulated). The sentence names the first thing a biophysicist must
know: an unfolded ensemble reads as unfolded whatever its local geometry.
"""

from __future__ import annotations

# Fractions of frames: most frames (4 in 5) -> green; at least half -> amber; fewer -> red.
GREEN_FRACTION = 0.8
AMBER_FRACTION = 0.5
# Mean RMSF against MD: within a factor of 2 -> green (short MD and short ensembles estimate RMSF to
# about that), within a factor of 3 -> amber, else red.
RMSF_GREEN, RMSF_AMBER = 2.0, 3.0


def _light(fraction) -> str:
    if fraction is None:
        return "amber"
    return "green" if fraction >= GREEN_FRACTION else "amber" if fraction >= AMBER_FRACTION else "red"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def _row(check, generated, reference, status, note=""):
    return {"check": check, "generated": generated, "reference": reference, "status": status, "note": note}


def _transition(gen_states: dict, cutoff: float):
    """(from, to) when the ensemble starts in one named state and later enters another, else None."""
    per = gen_states.get("per_state", {})
    entered = {name: s["first_frame_in_state"] for name, s in per.items() if s["first_frame_in_state"] is not None}
    if len(entered) < 2 and not (len(entered) == 1 and len(per) >= 2):
        return None
    start = min(per, key=lambda n: per[n]["first_rmsd_A"])  # the state nearest the first frame
    if per[start]["first_rmsd_A"] > cutoff:
        return None
    later = [n for n in entered if n != start and entered[n] > 0]
    return (start, min(later, key=lambda n: entered[n])) if later else None


def verdict(m: dict) -> dict:
    """{"sentence", "status", "rows", "notes"} from the metrics of :func:`mdllm.evaluate.pipeline.evaluate`."""
    v, g, c = m["validity"], m.get("global") or {}, m.get("comparison", {})
    has_ref = m["inputs"].get("reference") is not None
    rows, notes = [], []
    acc = v.get("acceptable_fraction")
    rows.append(
        _row(
            "acceptable frames (valid and globally plausible)",
            _pct(acc),
            f"valid (local checks only): {_pct(v.get('valid_fraction'))}",
            _light(acc),
        )
    )
    folded = g.get("folded_fraction")
    q = (g.get("q") or {}).get("mean")
    if g:
        rows.append(
            _row(
                "folded: compact and native contacts kept",
                _pct(folded) + (f", mean Q {q:.2f}" if q is not None else ""),
                f"Q ≥ {g['q_min']:.2f} of the start's {g['native_contacts']} contacts; "
                f"Rg {g['rg_band_A'][0]:.1f}-{g['rg_band_A'][1]:.1f} Å",
                _light(folded),
            )
        )
    basin = g.get("in_reference_basin_fraction")
    if has_ref and basin is not None:
        d = g["nearest_reference_rmsd_A"]
        rows.append(
            _row(
                "inside the reference basin",
                _pct(basin) + f" (nearest MD frame {d['mean']:.1f} Å on average)",
                f"nearest MD frame ≤ {g['basin_A']:.1f} Å CA-RMSD",
                _light(basin),
            )
        )
    rg = c.get("rg_A") or {}
    gen_rg = (rg.get("generated") or {}).get("mean")
    compact_fraction = g.get("compact_fraction")
    if gen_rg is not None:
        if has_ref and rg.get("reference"):
            ref_rg = g.get("reference_rg_A", {})
            ratio = gen_rg / rg["reference"]["mean"]
            rows.append(
                _row(
                    "radius of gyration (mean)",
                    f"{gen_rg:.1f} Å ({ratio:.2f}× MD)",
                    f"MD {rg['reference']['mean']:.1f} ± {ref_rg.get('std', 0):.1f} Å",
                    _light(compact_fraction),
                )
            )
        elif g:
            rows.append(
                _row(
                    "radius of gyration (mean)",
                    f"{gen_rg:.1f} Å",
                    f"start {g['start_rg_A']:.1f} Å; folded chain of {m['inputs']['residues']} residues "
                    f"~{g['rg_folded_expected_A']:.1f} Å, random coil ~{g['rg_coil_expected_A']:.1f} Å",
                    _light(compact_fraction),
                )
            )
    rmsf = c.get("rmsf_A", {})
    if rmsf.get("reference") and rmsf.get("generated"):
        a, b = rmsf["generated"]["mean"], rmsf["reference"]["mean"]
        ratio = a / b if b else float("inf")
        far = max(ratio, 1 / ratio) if ratio > 0 else float("inf")
        status = "green" if far <= RMSF_GREEN else "amber" if far <= RMSF_AMBER else "red"
        r = rmsf.get("pearson_r")
        rows.append(
            _row(
                "RMSF (mean over residues)",
                f"{a:.1f} Å ({ratio:.1f}× MD)",
                f"MD {b:.1f} Å" + (f"; per-residue r = {r:.2f}" if r is not None else ""),
                status,
            )
        )

    states = m.get("states", {})
    gen_states = states.get("generated", {})
    cutoff = states.get("cutoff_A", 1.5)
    training = (states.get("training") or {}).get("min_rmsd_A")
    new_states = []
    for name, s in gen_states.get("per_state", {}).items():
        # only acceptable frames count: an unfolded or broken frame near a state is no visit to it
        x = s["min_rmsd_acceptable_A"] if "min_rmsd_acceptable_A" in s else s["min_rmsd_A"]
        if x is None:
            rows.append(_row(f"closest approach to '{name}'", "no acceptable frame", "", "red"))
            continue
        reached = x <= cutoff
        t = None if training is None else training.get(name)
        if t is None:
            ref_text, note = "training frames not given", "cannot tell a new state from a remembered one"
        else:
            ref_text = f"training frames: {t:.1f} Å"
            note = (
                "training frames were already there: not a new state"
                if t <= cutoff
                else "a state the training frames never reached"
                if reached
                else "closer than any training frame"
                if x < t
                else ""
            )
            if reached and t > cutoff:
                new_states.append((name, x, t))
        status = "green" if reached else "amber" if t is not None and x is not None and x < t else "red"
        rows.append(
            _row(
                f"closest approach to '{name}' (acceptable frames)",
                f"{x:.1f} Å" + (f" (in state from frame {s['first_frame_in_state']})" if reached else ""),
                ref_text,
                status,
                note,
            )
        )

    # the sentence
    ref_word = "the reference MD" if has_ref else "the start structure"
    trans = _transition(gen_states, cutoff) if gen_states else None
    if g and folded is not None and folded < AMBER_FRACTION:
        rg_text = ""
        if gen_rg is not None:
            base = (rg.get("reference") or {}).get("mean") if has_ref else g["start_rg_A"]
            rg_text = f"mean Rg {gen_rg:.1f} Å against {base:.1f} Å for {ref_word}, "
        sentence = (
            f"Not folded: only {_pct(folded)} of frames keep the start structure's compaction and native "
            f"contacts ({rg_text}mean Q {q:.2f}); this is an unfolded ensemble, not your protein."
        )
        status = "red"
    elif trans is not None:
        a, b = trans
        s = gen_states["per_state"][b]
        sentence = (
            f"Transition: the ensemble goes from '{a}' to '{b}' (within {s['min_rmsd_A']:.1f} Å from "
            f"frame {s['first_frame_in_state']}) and stays folded ({_pct(acc)} of frames acceptable)"
        )
        t = None if training is None else training.get(b)
        sentence += (
            "."
            if t is None
            else f"; the training frames came no closer than {t:.1f} Å, so '{b}' is new."
            if t > cutoff
            else f"; the training frames were already in '{b}' ({t:.1f} Å)."
        )
        status = "green" if acc is not None and acc >= AMBER_FRACTION else "amber"
    elif has_ref and basin is not None and basin < AMBER_FRACTION:
        sentence = (
            f"Folded, but {_pct(1 - basin)} of frames lie outside the reference basin (nearest MD frame more "
            f"than {g['basin_A']:.1f} Å away): a region the reference did not sample, or a reference "
            "too short to show it."
        )
        status = "amber"
    elif acc is not None and acc < AMBER_FRACTION:
        sentence = (
            f"Folded and close to {ref_word}, but only {_pct(v.get('valid_fraction'))} of frames pass the "
            "local checks (bonds, angles, Ramachandran, clashes): the backbones are distorted."
        )
        status = "amber"
    elif acc is None:
        sentence = f"Only the local checks ran: {_pct(v.get('valid_fraction'))} of frames valid."
        status = _light(v.get("valid_fraction"))
    else:
        where = "inside the reference basin" if has_ref else "like the start structure (no reference MD given)"
        sentence = f"Folded and {where}: {_pct(acc)} of frames acceptable."
        status = _light(acc)
    if new_states and trans is None:
        sentence += (
            " New state"
            + ("s" if len(new_states) > 1 else "")
            + " reached: "
            + ", ".join(f"'{n}' ({x:.1f} Å; training frames {t:.1f} Å)" for n, x, t in new_states)
            + "."
        )

    k = m.get("kinetics", {})
    if k.get("skipped"):
        notes.append(f"Kinetics not compared: {k['skipped']}.")
    if k.get("warning"):
        notes.append(f"Kinetics: {k['warning']}.")
    if has_ref and g.get("reference_frames") is not None and g["reference_frames"] < 50:
        notes.append(
            f"The reference has only {g['reference_frames']} frames: its basin ({g['basin_A']:.1f} Å) "
            "and spread may be narrower than the protein's."
        )
    if g and not has_ref:
        notes.append(
            "No reference MD given: compaction and contacts are judged against the start structure "
            f"({g.get('start') or 'first frame'}) and the size of a folded chain of this length."
        )
    return {"sentence": sentence, "status": status, "rows": rows, "notes": notes}


def plain(text: str) -> str:
    """The verdict's text in ASCII for any terminal."""
    for char, ascii_ in (("Å", "A"), ("×", "x"), ("±", "+-"), ("≥", ">="), ("≤", "<=")):
        text = text.replace(char, ascii_)
    return text


def print_verdict(metrics, report_path) -> None:
    """The verdict table for the terminal; its sentence is the last line."""
    v = metrics["validity"]
    print(
        f"valid frames: {v['valid_frames']} of {v['frames']}"
        + (f"; acceptable: {v['acceptable_frames']}" if "acceptable_frames" in v else "")
    )
    verdict = metrics.get("verdict") or {}
    for row in verdict.get("rows", []):
        note = f"  [{plain(row['note'])}]" if row["note"] else ""
        print(
            f"  {row['status']:5s}  {plain(row['check'])}: {plain(row['generated'])} | {plain(row['reference'])}{note}"
        )
    for note in verdict.get("notes", []):
        print(f"  note: {plain(note)}")
    print(f"report: {report_path}")
    if verdict:
        print(f"verdict: {plain(verdict['sentence'])}")
