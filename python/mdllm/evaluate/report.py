"""report.html: the verdict on top (one sentence and a small traffic-light table), then the key
numbers of metrics.json in a longer table and the plots beside it."""

from __future__ import annotations

import html
from pathlib import Path

from mdllm.files import atomic_output


def _fmt(value, digits=2):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def key_rows(m: dict) -> list[tuple[str, str]]:
    rows = [
        ("frames (finite)", f"{m['inputs']['frames']} ({m['inputs'].get('finite_frames', '-')})"),
        ("residues", _fmt(m["inputs"]["residues"])),
        (
            "valid frames (local checks)",
            f"{m['validity']['valid_frames']} of {m['validity']['frames']} "
            f"({100 * m['validity']['valid_fraction']:.1f} %)",
        ),
    ]
    if "acceptable_frames" in m["validity"]:
        rows.append(
            (
                "acceptable frames (valid and globally plausible)",
                f"{m['validity']['acceptable_frames']} of {m['validity']['frames']} "
                f"({100 * m['validity']['acceptable_fraction']:.1f} %)",
            )
        )
    g = m.get("global")
    if g:
        rows.append(
            (
                "global checks compare with",
                f"start: {_fmt(g.get('start'))}"
                + (f"; reference: {g['reference_frames']} frames" if g.get("reference_frames") else ""),
            )
        )
        rows.append(
            (
                "native contacts Q (Best-Hummer-Eaton, backbone atoms)",
                f"mean {_fmt(g['q']['mean'])}, min {_fmt(g['q']['min'])}; threshold {_fmt(g['q_min'])}",
            )
        )
        rows.append(("radius of gyration band", f"{_fmt(g['rg_band_A'][0], 1)}-{_fmt(g['rg_band_A'][1], 1)} Å"))
        if g.get("nearest_reference_rmsd_A"):
            d = g["nearest_reference_rmsd_A"]
            rows.append(
                (
                    "CA-RMSD to the nearest reference frame",
                    f"mean {_fmt(d['mean'])}, min {_fmt(d['min'])}, max {_fmt(d['max'])} Å; basin {_fmt(g['basin_A'])} Å",
                )
            )
    if "reference_validity" in m:
        r = m["reference_validity"]
        rows.append(("valid reference frames", f"{r['valid_frames']} of {r['frames']}"))
    training = (m.get("states", {}).get("training") or {}).get("min_rmsd_A") or {}
    for name, value in training.items():
        rows.append((f"training frames: min CA RMSD to {html.escape(name)}", f"{_fmt(value)} Å"))
    for who in ("generated", "reference"):
        s = m.get("states", {}).get(who)
        if not s:
            continue
        for name, v in s["per_state"].items():
            rows.append(
                (
                    f"{who}: min CA RMSD to {html.escape(name)}",
                    f"{_fmt(v['min_rmsd_A'])} Å (first {_fmt(v['first_rmsd_A'])}, last {_fmt(v['last_rmsd_A'])}); "
                    f"reached at frame {_fmt(v['first_frame_in_state'])}",
                )
            )
        pops = ", ".join(f"{html.escape(k)} {100 * v:.0f} %" for k, v in s["populations"].items())
        rows.append((f"{who}: populations (cutoff {m['states']['cutoff_A']} Å)", pops))
        rows.append(
            (f"{who}: transitions", ", ".join(f"{html.escape(k)}: {v}" for k, v in s["transitions"].items()) or "none")
        )
        if s.get("rmsd_crossing_frame") is not None:
            rows.append((f"{who}: RMSD traces cross at frame", _fmt(s["rmsd_crossing_frame"])))
    c = m.get("comparison", {})
    if "pearson_r" in c.get("rmsf_A", {}):
        rows.append(("RMSF correlation with reference (Pearson r)", _fmt(c["rmsf_A"]["pearson_r"], 3)))
    if "js_distance" in c.get("pairwise_rmsd_A", {}):
        rows.append(("JS distance, pairwise RMSD", _fmt(c["pairwise_rmsd_A"]["js_distance"], 3)))
    for k, v in c.get("js_distance", {}).items():
        rows.append((f"JS distance, {k}", _fmt(v, 3)))
    for k, v in m.get("kinetics", {}).get("js_distance", {}).items():
        rows.append((f"JS distance, TICA {k}", _fmt(v, 3)))
    msm = m.get("kinetics", {}).get("msm", {})
    for who in ("generated", "reference"):
        if who in msm and msm[who]["timescales_ps"]:
            ts = msm[who]["timescales_ps"][0]
            rows.append(
                (
                    f"{who}: slowest implied timescale at lag {_fmt(msm[who]['lag_ps'][0], 1)} ps",
                    f"{_fmt(ts[0], 1)} ps ({msm[who]['counts']})",
                )
            )
    for key in ("skipped", "warning"):
        if m.get("kinetics", {}).get(key):
            rows.append((f"kinetics ({key})", html.escape(m["kinetics"][key])))
    ll = m.get("kinetics", {}).get("generation_loglik")
    if ll:
        rows.append(("generation log-likelihood per frame", _fmt(ll["mean_per_frame"], 2)))
    for who, r in m.get("rebuild", {}).items():
        e = r.get("energy_after_kj_mol") or {}
        d = r.get("backbone_drift_A") or {}
        ci = r.get("sane_fraction_ci95")
        ci = f" (95 % CI {100 * ci[0]:.0f}-{100 * ci[1]:.0f} %)" if ci else ""
        rows.append(
            (
                f"{who}: all-atom rebuild, sane after minimisation",
                f"{100 * r['sane_fraction']:.0f} % of {r['frames']} frames{ci}; median energy "
                f"{_fmt(e.get('median'), 0)} kJ/mol, median backbone drift {_fmt(d.get('median'))} Å",
            )
        )
    return rows


LIGHTS = {"green": ("#1a7f37", "OK"), "amber": ("#b07800", "check"), "red": ("#c62828", "fails")}


def verdict_html(v: dict) -> str:
    """The verdict block: sentence, traffic-light table and notes."""
    e = html.escape
    colour, _ = LIGHTS.get(v["status"], LIGHTS["amber"])
    rows = "\n".join(
        f'<tr><td class="light"><span class="dot" style="background:{LIGHTS[r["status"]][0]}"></span>'
        f"{LIGHTS[r['status']][1]}</td><th>{e(r['check'])}</th><td>{e(r['generated'])}</td><td>{e(r['reference'])}</td>"
        f'<td class="note">{e(r["note"])}</td></tr>'
        for r in v["rows"]
    )
    notes = "".join(f"<li>{e(n)}</li>" for n in v["notes"])
    return (
        f'<div class="verdict" style="border-left-color:{colour}"><p class="sentence">{e(v["sentence"])}</p>'
        f'<table class="vt"><tr><td></td><th>check</th><th>generated</th><th>compared with</th><th>note</th></tr>'
        f"{rows}</table>" + (f'<ul class="notes">{notes}</ul>' if notes else "") + "</div>"
    )


def write_html(path: Path, metrics: dict) -> None:
    rows = "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in key_rows(metrics))
    verdict = verdict_html(metrics["verdict"]) if metrics.get("verdict") else ""
    figures = "\n".join(
        f'<figure><img src="{html.escape(name)}" alt="{html.escape(name)}">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name in metrics.get("plots", [])
    )
    invalid = metrics["validity"].get("invalid", [])[:50]
    invalid_rows = "\n".join(
        f"<tr><td>{v['frame']}</td><td>{'<br>'.join(html.escape(r) for r in v['reasons'])}</td></tr>" for v in invalid
    )
    invalid_frames = {v["frame"] for v in metrics["validity"].get("invalid", [])}
    implausible = [v for v in (metrics.get("global") or {}).get("implausible", []) if v["frame"] not in invalid_frames][
        :50
    ]
    implausible_rows = "\n".join(
        f"<tr><td>{v['frame']}</td><td>{'<br>'.join(html.escape(r) for r in v['reasons'])}</td></tr>"
        for v in implausible
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mdllm evaluation: {html.escape(str(metrics["inputs"]["generated"]))}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1200px; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; font-size: 14px; }}
th {{ background: #f4f4f4; font-weight: normal; }}
figure {{ display: inline-block; margin: 0.5em; }} img {{ max-width: 560px; }}
figcaption {{ font-size: 12px; color: #555; }}
.verdict {{ border-left: 8px solid #999; padding: 0.6em 1em; background: #fafafa; margin-bottom: 1.5em; }}
.sentence {{ font-size: 20px; margin: 0.2em 0 0.8em 0; line-height: 1.35; }}
.vt th, .vt td {{ font-size: 15px; background: white; }}
.vt tr:first-child th {{ background: #f4f4f4; font-weight: bold; }}
.light {{ white-space: nowrap; font-weight: bold; }}
.dot {{ display: inline-block; width: 14px; height: 14px; border-radius: 7px; margin-right: 6px; vertical-align: -2px; }}
.note {{ color: #555; font-size: 13px; }}
.notes {{ font-size: 14px; color: #444; margin: 0.6em 0 0 0; }}
</style></head><body>
<h1>mdllm evaluation</h1>
<p>generated: <code>{html.escape(str(metrics["inputs"]["generated"]))}</code>;
reference: <code>{html.escape(str(metrics["inputs"]["reference"] or "-"))}</code>.
Distances in Å; full numbers in <a href="metrics.json">metrics.json</a>.</p>
{verdict}
<h2>Summary</h2>
<table>{rows}</table>
<h2>Plots</h2>
{figures}
<h2>Invalid frames (first 50)</h2>
<table><tr><th>frame</th><th>reasons</th></tr>{invalid_rows or '<tr><td colspan="2">none</td></tr>'}</table>
<h2>Valid but implausible frames (first 50)</h2>
<table><tr><th>frame</th><th>reasons</th></tr>{implausible_rows or '<tr><td colspan="2">none</td></tr>'}</table>
</body></html>
"""
    with atomic_output(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
