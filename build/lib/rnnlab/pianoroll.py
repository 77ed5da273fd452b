"""Piano rolls outside training: the 88-key range, MIDI files, pictures and the statistics a musician checks.

Shared by the music data (``rnnlab.data.music``), the music model and the sample callbacks."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from rnnlab.errors import require

LOW, HIGH = 21, 108  # the piano's MIDI range
KEYS = HIGH - LOW + 1


def roll_to_midi(roll: Tensor, path: str | Path, step_ticks: int = 480, tempo_bpm: int = 80, program: int = 19) -> Path:
    """Write a ``[T, 88]`` roll as a one-track MIDI file: one step = one beat (``step_ticks``), a key held over
    consecutive steps is one note. Program 19: church organ."""
    mido = require("mido", "music", "MIDI files")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mid = mido.MidiFile(ticks_per_beat=step_ticks)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
    track.append(mido.Message("program_change", program=program, time=0))
    on = (roll > 0.5).cpu()
    events = []  # (tick, order, message): note-offs before note-ons at the same tick
    T = len(on)
    for k in range(KEYS):
        t = 0
        while t < T:
            if on[t, k]:
                start = t
                while t < T and on[t, k]:
                    t += 1
                events.append((start * step_ticks, 1, mido.Message("note_on", note=k + LOW, velocity=80)))
                events.append((t * step_ticks, 0, mido.Message("note_off", note=k + LOW, velocity=0)))
            else:
                t += 1
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1], e[2].note)):
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(T * step_ticks - now, 0)))
    mid.save(str(path))
    return path


def midi_to_roll(path: str | Path) -> Tensor:
    """Read a MIDI file written by :func:`roll_to_midi` back into a ``[T, 88]`` roll (steps of one beat)."""
    mido = require("mido", "music", "MIDI files")

    mid = mido.MidiFile(str(path))
    step = mid.ticks_per_beat
    notes, now, active = [], 0, {}
    for msg in mido.merge_tracks(mid.tracks):
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            active[msg.note] = now
        elif msg.type in ("note_off", "note_on") and msg.note in active:
            notes.append((msg.note, active.pop(msg.note), now))
    T = max((end for _, _, end in notes), default=0) // step
    roll = torch.zeros(T, KEYS)
    for note, start, end in notes:
        roll[start // step : end // step, note - LOW] = 1.0
    return roll


def plot_roll(roll: Tensor, path: str | Path, title: str = "", primer_steps: int = 0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    used = (roll > 0.5).any(0).nonzero().flatten()
    lo, hi = (int(used.min()), int(used.max()) + 1) if len(used) else (0, KEYS)
    fig, ax = plt.subplots(figsize=(max(6, len(roll) / 8), 4))
    ax.imshow(
        roll[:, lo:hi].T.cpu(),
        origin="lower",
        aspect="auto",
        cmap="Greys",
        interpolation="nearest",
        extent=(0, len(roll), lo + LOW - 0.5, hi + LOW - 0.5),
    )
    if primer_steps:
        ax.axvline(primer_steps, color="tab:red", lw=1)
    ax.set_xlabel("step (quarter notes)")
    ax.set_ylabel("MIDI pitch")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def roll_stats(rolls: list[Tensor], primer_pitch_classes: Optional[set[int]] = None) -> dict:
    """What a musician checks: notes per step, pitch range, share of notes in a key (a set of pitch classes)."""
    steps = torch.cat([r for r in rolls if len(r)]) > 0.5
    pitches = steps.nonzero()[:, 1] + LOW
    out = {
        "notes_per_step": round(float(steps.sum(1).float().mean()), 3),
        "pitch_min": int(pitches.min()) if len(pitches) else None,
        "pitch_max": int(pitches.max()) if len(pitches) else None,
    }
    if primer_pitch_classes is not None and len(pitches):
        out["in_key_share"] = round(float(sum(int(p) % 12 in primer_pitch_classes for p in pitches) / len(pitches)), 4)
    return out
