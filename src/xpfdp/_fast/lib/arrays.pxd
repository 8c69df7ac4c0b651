# The one check of a numpy batch argument: every batch API takes 1-D C-contiguous arrays
# of a given dtype, and refuses anything else with the same wording. (Modules that cimport
# this call numpy's import_array() themselves.)

cimport numpy as cnp


cdef inline cnp.ndarray checked_array(object arr, object dtype, str name, bint writable=False,
                                      str dtype_name=None):
    """`arr` itself once it is a 1-D C-contiguous numpy array of `dtype` (writable if
    asked); TypeError / ValueError naming `name` otherwise. Runs once per batch call."""
    if not isinstance(arr, cnp.ndarray):
        raise TypeError(f"{name} must be a numpy array of dtype {dtype_name or dtype}, "
                        f"not {type(arr).__name__}")
    cdef cnp.ndarray a = <cnp.ndarray>arr
    if a.dtype is not dtype and a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype_name or dtype}, not {a.dtype}")
    if cnp.PyArray_NDIM(a) != 1 or not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError(f"{name} must be a 1-D C-contiguous array")
    if writable and not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(f"{name} must be writable")
    return a
