# Regenerates BUILD from the tree: python3 .ci/gen_build.py (run from the repo root).
import glob, os
pk = sorted(d for d in os.listdir("bam_tf") if os.path.isfile(f"bam_tf/{d}/__init__.py"))
deps_of = {"distill": ["data", "tasks", "outputs"], "reports": ["evaluation", "outputs", "tasks"], "serving": ["data", "modeling", "training"], "tasks": [], "outputs": [], "evaluation": ["tasks", "modeling"], "data": ["tasks", "outputs"],
           "modeling": ["tasks"], "training": ["modeling"], "tools": ["outputs", "reports"]}
out = ['# Bazel targets: one py_library per package folder, the entry point, one',
       '# py_test per test file. tests/test_build_file.py keeps this complete.',
       'load("@rules_python//python:defs.bzl", "py_binary", "py_library", "py_test")',
       'load("@pypi//:requirements.bzl", "requirement")', '',
       'package(default_visibility = ["//visibility:public"])', '',
       'THIRD_PARTY = [', *[f'    requirement("{r}"),' for r in ["tensorflow", "tensorflow-text", "tf-models-official", "tensorflow-hub", "tf-keras", "absl-py", "numpy", "scipy", "safetensors", "matplotlib"]], ']', '']
top = sorted(glob.glob("bam_tf/*.py"))
out += ['py_library(', '    name = "bam_tf",', '    srcs = [', *[f'        "{f}",' for f in top], '    ],',
        '    deps = [' + ", ".join(f'":{p}"' for p in pk) + '] + THIRD_PARTY,', ')', '']
for p in pk:
  srcs = sorted(glob.glob(f"bam_tf/{p}/*.py"))
  out += ['py_library(', f'    name = "{p}",', '    srcs = [', *[f'        "{f}",' for f in srcs], '    ],',
          '    deps = [' + ", ".join(f'":{d}"' for d in deps_of.get(p, [])) + '] + THIRD_PARTY,', ')', '']
out += ['py_binary(', '    name = "run_classifier",', '    srcs = ["run_classifier.py"],', '    main = "run_classifier.py",', '    deps = [":bam_tf"],', ')', '']
for b in sorted(glob.glob("benchmarks/*.py")):
  out += ['py_binary(', f'    name = "{os.path.basename(b)[:-3]}",', f'    srcs = ["{b}"],', f'    main = "{b}",', '    deps = [":bam_tf"],', ')', '']
out += ['py_library(', '    name = "test_support",', '    testonly = True,', '    srcs = ["tests/conftest.py"],', '    deps = [":bam_tf", requirement("pytest")],', ')', '']
for t in sorted(glob.glob("tests/test_*.py")):
  name = os.path.basename(t)[:-3]
  out += ['py_test(', f'    name = "{name}",', f'    srcs = ["{t}"],', f'    main = "{t}",', '    size = "large",',
          '    data = ["//:official_configs"],' if False else '', '    deps = [":test_support"],', ')', '']
open("BUILD", "w").write("\n".join(l for l in out if l != '') .replace("\n)\n", "\n)\n\n"))
