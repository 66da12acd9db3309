import pipetune


def test_exports_are_what_all_claims() -> None:
    for name in pipetune.__all__:
        assert hasattr(pipetune, name), name
    public = {
        n for n in dir(pipetune) if not n.startswith("_") and not isinstance(getattr(pipetune, n), type(pipetune))
    }
    assert public <= set(pipetune.__all__) | {"annotations"}


def test_importing_pipetune_does_not_import_ray() -> None:
    import subprocess
    import sys

    code = "import sys, pipetune, pipetune.cli; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_no_public_function_shadows_a_subpackage() -> None:
    import importlib

    for name in ("record", "tune", "diagnose", "store", "plan", "lint", "report"):
        module = importlib.import_module(f"pipetune.{name}")
        assert getattr(pipetune, name) is module, name  # after `import pipetune`, pipetune.tune is the package
    assert pipetune.tune.Study is not None and callable(pipetune.tune_script) and callable(pipetune.run_script)


def test_each_package_face_gives_the_names_it_lists() -> None:
    import importlib
    import types

    for name in ("diagnose", "record", "tune", "plan", "report", "ui", "store", "lint"):
        face = importlib.import_module(f"pipetune.{name}")
        for exported in face.__all__:
            value = getattr(face, exported)
            assert not isinstance(value, types.ModuleType), f"pipetune.{name}.{exported} is a module"
