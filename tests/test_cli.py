"""End to end: the real `python -m compiler` command line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, run_cli


def test_compile_writes_model_arch_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "r18"
    proc = run_cli(f"arch={EXAMPLES / 'resnet18.arch'}", f"out_dir={out}", "+params.num_classes=7")
    assert proc.returncode == 0, proc.stderr
    assert "11,689,512" not in proc.stdout and "parameters" in proc.stdout and "stem_conv1" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["name"] == "resnet18" and summary["output_shape"] == [7]
    assert summary["params"] == 11_689_512 - 1000 * 513 + 7 * 513
    assert summary["input_shape"] == [3, 224, 224] and len(summary["layers"]) > 50
    assert (out / "arch.arch").read_text().startswith("# canonical form")
    # model.py is standalone: run it in a fresh interpreter from another directory.
    run = subprocess.run([sys.executable, str(out / "model.py")], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and "torch.Size([2, 7])" in run.stdout


def test_user_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.arch"
    bad.write_text("model m() {\n  input x: [3, 8, 8]\n  output x -> linear(10)\n}\n")
    proc = run_cli(f"arch={bad}", f"out_dir={tmp_path / 'o'}")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{bad}:3:15: error: shape error: 'linear' expects a flat")
    assert "  output x -> linear(10)" in proc.stderr and "^" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_missing_file_and_syntax_error(tmp_path: Path) -> None:
    proc = run_cli(f"arch={tmp_path / 'nope.arch'}", f"out_dir={tmp_path / 'o'}")
    assert proc.returncode == 2 and "no such file" in proc.stderr and "Traceback" not in proc.stderr
    bad = tmp_path / "syntax.arch"
    bad.write_text("model m() { input x: [1, 2, 2]\n output x -> relu relu }")
    proc = run_cli(f"arch={bad}", f"out_dir={tmp_path / 'o'}")
    assert proc.returncode == 2 and f"{bad}:2:" in proc.stderr and "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = run_cli(f"arch={tmp_path / 'nope.arch'}", "debug=true", f"out_dir={tmp_path / 'o'}")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_user_registered_op_from_the_config(tmp_path: Path) -> None:
    arch = tmp_path / "shuffle.arch"
    arch.write_text("model s() { input x: [4, 4, 4]\n output x -> channel_shuffle(2) -> hardtanh(-0.5, 0.5) }")
    proc = run_cli(f"arch={arch}", f"out_dir={tmp_path / 'o'}", "ops=[examples.custom_ops]")
    assert proc.returncode == 0, proc.stderr
    source = (tmp_path / "o" / "model.py").read_text()
    assert "unflatten(1, (2, -1))" in source and "nn.Hardtanh(-0.5, 0.5)" in source
    proc = run_cli(f"arch={arch}", f"out_dir={tmp_path / 'o'}")
    assert proc.returncode == 2 and "unknown op or block 'channel_shuffle'" in proc.stderr
    assert "hint: an op of your own is registered by a Python module named on the command line: ops=[my_ops]" \
        in proc.stderr
    proc = run_cli(f"arch={arch}", f"out_dir={tmp_path / 'o'}", "ops=[no_such_module_xyz]")
    assert proc.returncode == 2 and "cannot import op module 'no_such_module_xyz'" in proc.stderr


def test_compiling_a_space_checks_it_and_lists_its_decisions(tmp_path: Path) -> None:
    proc = run_cli(f"arch={EXAMPLES / 'spaces' / 'digits.arch'}", f"out_dir={tmp_path / 's'}")
    assert proc.returncode == 0, proc.stderr
    space = json.loads((tmp_path / "s" / "space.json").read_text())
    assert space["size"] == 768 and [d["name"] for d in space["decisions"]][:3] == ["width", "stage1_block", "op"]
    assert "a search space of 768 architectures in 7 decisions" in proc.stdout
    bad = tmp_path / "bad_space.arch"
    bad.write_text("model t() { input x: [3, 8, 8]\n a = x -> conv([3 | 4], 1)\n output (a, x) -> add }")
    proc = run_cli(f"arch={bad}", f"out_dir={tmp_path / 'b'}")
    assert proc.returncode == 2 and f"{bad}:3:" in proc.stderr and "with the choices t.a=4" in proc.stderr


def test_a_config_hydra_cannot_compose_exits_2_with_hydra_s_message(tmp_path: Path) -> None:
    """Hydra exits 1 on a config it cannot compose; that is the user's mistake (issue 10): status 2, its message,
    no traceback."""
    for override, message in [("trainer.optimizer.lrr=1", "Key 'lrr' is not in struct"),
                              ("profile=abc hydra.searchpath=[file:///nowhere]", "Could not find 'profile/abc'"),
                              ("seed=[", "no viable alternative at input '['")]:
        proc = run_cli(*override.split(), f"out_dir={tmp_path / 'o'}")
        assert proc.returncode == 2, (override, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr + proc.stdout, (override, proc.stderr)


def test_an_option_a_config_group_lacks_is_one_line_naming_the_closest(tmp_path: Path) -> None:
    for override, message in [
            ("+search=evoluton", "search: error: no option 'evoluton' in the config group 'search'; did you mean "
                                 "'evolution'?\n  hint: search is one of: darts, evolution, "),
            ("profile=abc", "profile: error: no option 'abc' in the config group 'profile'\n"
                            "  hint: profile is one of: cpu, cuda, none, predictor\n"),
            ("-m +search=random objective=accuracy,acc_param", "objective: error: no option 'acc_param' in the "
                                                               "config group 'objective'; did you mean 'acc_params'?")]:
        proc = run_cli(*override.split(), f"out_dir={tmp_path / 'o'}", cwd=tmp_path)
        assert proc.returncode == 2 and proc.stderr.startswith(message), (override, proc.stderr)
        assert not (tmp_path / "o").exists() and not (tmp_path / "multirun").exists()


def test_group_options_are_not_judged_where_other_config_directories_may_hold_them(tmp_path: Path) -> None:
    from compiler.cli_checks import check_group_options
    check_group_options(["+search=mine", "hydra.searchpath=[file://my_conf]"])   # Hydra decides
    check_group_options(["+search=glob(*)", "space=nb201", "seed=0,1", "out_dir=a,b", "profile=null"])   # fine here
    with pytest.raises(SystemExit) as stopped:
        check_group_options(["-m", "dataset=digits,mnist,cifar11"])
    assert stopped.value.code == 2


def test_a_task_s_own_status_is_passed_on(tmp_path: Path) -> None:
    """Only failures before the task starts become 2: what a task returns, or a crash in it, stays as it is."""
    (tmp_path / "status_tasks.py").write_text("def nothing_succeeded(cfg):\n    return 1\n\n"
                                              "def diverged(cfg):\n    return 3\n\n"
                                              "def crash(cfg):\n    raise RuntimeError('a bug')\n")
    for task, status in [("nothing_succeeded", 1), ("diverged", 3), ("crash", 1)]:
        proc = run_cli(f"task._target_=status_tasks.{task}", f"out_dir={tmp_path / task}", cwd=tmp_path)
        assert proc.returncode == status, (task, proc.stderr)
    assert "RuntimeError: a bug" in proc.stderr


def test_compiling_a_model_too_large_to_build_writes_it_and_warns(tmp_path: Path) -> None:
    arch = tmp_path / "big.arch"
    arch.write_text("model big() {\n  input x: [3, 8, 8]\n  output x -> conv(1000000, 3) -> conv(1000000, 3)\n}\n")
    proc = run_cli(f"arch={arch}", f"out_dir={tmp_path / 'o'}")
    assert proc.returncode == 0 and (tmp_path / "o" / "model.py").is_file()
    warning = proc.stdout.splitlines()[-2:]
    assert warning[0].startswith("warning: this model is too large to build here: the model has 9,000,029,000,000 "
                                 "parameters")
    assert warning[1].startswith("  hint: if this is intended, raise the limit: limits.max_params=")
    small = run_cli(f"arch={EXAMPLES / 'resnet20.arch'}", f"out_dir={tmp_path / 's'}")
    assert small.returncode == 0 and "warning" not in small.stdout
