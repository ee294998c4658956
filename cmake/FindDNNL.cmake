# FindDNNL.cmake — finds oneDNN's C library and headers directly and defines DNNL::dnnl.
#
# Why not find_package(dnnl CONFIG): Debian's dnnl-config.cmake is written for a build with the
# OpenCL GPU runtime and calls find_package(OpenCL REQUIRED), which needs the OpenCL headers and
# libOpenCL.so from ocl-icd-opencl-dev — a package libdnnl-dev only *recommends*. helios uses
# oneDNN's CPU engine alone and includes no OpenCL header, so it needs nothing beyond what
# libdnnl-dev depends on: the runtime's own libOpenCL.so.1 comes with libdnnl2's Depends.
#
# Sets DNNL_FOUND, DNNL_INCLUDE_DIR, DNNL_LIBRARY, DNNL_VERSION and the imported target DNNL::dnnl.
find_path(DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.h)
find_library(DNNL_LIBRARY NAMES dnnl)
if(DNNL_INCLUDE_DIR AND EXISTS "${DNNL_INCLUDE_DIR}/oneapi/dnnl/dnnl_version.h")
  file(STRINGS "${DNNL_INCLUDE_DIR}/oneapi/dnnl/dnnl_version.h" _dnnl_ver
       REGEX "^#define DNNL_VERSION_(MAJOR|MINOR|PATCH) ")
  foreach(_part MAJOR MINOR PATCH)
    string(REGEX REPLACE ".*#define DNNL_VERSION_${_part} ([0-9]+).*" "\\1" _dnnl_${_part} "${_dnnl_ver}")
  endforeach()
  set(DNNL_VERSION "${_dnnl_MAJOR}.${_dnnl_MINOR}.${_dnnl_PATCH}")
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(DNNL REQUIRED_VARS DNNL_LIBRARY DNNL_INCLUDE_DIR
                                  VERSION_VAR DNNL_VERSION
                                  REASON_FAILURE_MESSAGE "install Debian's libdnnl-dev (scripts/deps.sh installs every dependency)")
if(DNNL_FOUND AND NOT TARGET DNNL::dnnl)
  add_library(DNNL::dnnl UNKNOWN IMPORTED)
  set_target_properties(DNNL::dnnl PROPERTIES IMPORTED_LOCATION "${DNNL_LIBRARY}"
                        INTERFACE_INCLUDE_DIRECTORIES "${DNNL_INCLUDE_DIR}")
endif()
mark_as_advanced(DNNL_INCLUDE_DIR DNNL_LIBRARY)
