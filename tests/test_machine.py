"""The machine a run trained on is recorded: which flags, hence which presets fit it."""

from __future__ import annotations

import json

import pytest

from topictone.infer import machine

AVX2_ONLY = "processor\t: 0\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse avx avx2 fma\n\n"
SAPPHIRE = (
    "processor\t: 0\nmodel name\t: Intel Xeon\nflags\t\t: avx2 avx512f avx512_bf16 "
    "amx_bf16 avx512_vnni\n\nprocessor\t: 1\nmodel name\t: other\nflags\t\t: none\n"
)


@pytest.fixture
def cpuinfo(tmp_path, monkeypatch):
    def use(text: str | None):
        path = tmp_path / "cpuinfo"
        if text is not None:
            path.write_text(text)
        monkeypatch.setattr(machine, "CPUINFO", path)
        machine._cpuinfo.cache_clear()

    yield use
    machine._cpuinfo.cache_clear()


def test_an_avx2_machine_has_neither_bfloat16_nor_vnni(cpuinfo):
    cpuinfo(AVX2_ONLY)
    assert machine.cpu_flags() == {
        "avx2": True,
        "avx512f": False,
        "avx512_bf16": False,
        "amx_bf16": False,
        "avx512_vnni": False,
        "avx_vnni": False,
    }
    line = machine.describe()
    assert line.startswith("AMD EPYC 7B12, ") and "bfloat16 kernels: no; VNNI: no" in line


def test_the_first_processor_speaks_for_the_machine(cpuinfo):
    cpuinfo(SAPPHIRE)
    assert machine.machine()["cpu"] == "Intel Xeon"
    assert "flags: avx2 avx512f avx512_bf16 amx_bf16 avx512_vnni;" in machine.describe()
    assert "bfloat16 kernels: yes; VNNI: yes" in machine.describe()


def test_flags_that_cannot_be_read_are_unknown_not_absent(cpuinfo):
    cpuinfo(None)
    assert machine.cpu_flags() is None and "CPU flags unknown" in machine.describe()


def test_a_run_records_its_machine(tfidf_run):
    manifest = json.loads((tfidf_run / "manifest.json").read_text())
    assert manifest["machine"] == json.loads(json.dumps(machine.machine()))
