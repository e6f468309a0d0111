"""The fsspec front end: the archive as an fsspec filesystem (`dandifs://`), for programs
that open files through fsspec (h5py on file objects, zarr, xarray, pandas) without a mount.

`DandiFileSystem` is registered under the protocol `dandifs` by the package's entry point
(`fsspec.specs`); it runs one core per archive and token on a background trio thread
(`cores`), and maps errors to Python's once, in `errors`.
"""

from dandifs.fsspec.filesystem import PROTOCOL, DandiFile, DandiFileSystem

__all__ = ["PROTOCOL", "DandiFile", "DandiFileSystem"]
