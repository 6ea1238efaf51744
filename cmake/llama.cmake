# Locate llama.cpp as llama-cpp-python installs it (headers in site-packages/include, libraries in
# site-packages/llama_cpp/lib), or where MDLLM_LLAMA_INCLUDE_DIR / MDLLM_LLAMA_LIB_DIR point.
# Defines the imported target mdllm::llama and MDLLM_LLAMA_FOUND.
set(MDLLM_LLAMA_INCLUDE_DIR "" CACHE PATH "Folder holding llama.h (default: from llama-cpp-python)")
set(MDLLM_LLAMA_LIB_DIR "" CACHE PATH "Folder holding libllama (default: from llama-cpp-python)")

if(NOT MDLLM_LLAMA_INCLUDE_DIR OR NOT MDLLM_LLAMA_LIB_DIR)
  find_package(Python COMPONENTS Interpreter QUIET)
  if(Python_Interpreter_FOUND)
    execute_process(
      COMMAND "${Python_EXECUTABLE}" -c
        "import importlib.util as u, pathlib as p; s = u.find_spec('llama_cpp'); d = p.Path(s.origin).parent; print(d.parent / 'include'); print(d / 'lib')"
      OUTPUT_VARIABLE _llama_paths RESULT_VARIABLE _llama_rc ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(_llama_rc EQUAL 0)
      string(REPLACE "\n" ";" _llama_paths "${_llama_paths}")
      list(GET _llama_paths 0 _inc)
      list(GET _llama_paths 1 _lib)
      if(NOT MDLLM_LLAMA_INCLUDE_DIR)
        set(MDLLM_LLAMA_INCLUDE_DIR "${_inc}")
      endif()
      if(NOT MDLLM_LLAMA_LIB_DIR)
        set(MDLLM_LLAMA_LIB_DIR "${_lib}")
      endif()
    endif()
  endif()
endif()

find_path(MDLLM_LLAMA_HEADER llama.h HINTS "${MDLLM_LLAMA_INCLUDE_DIR}" NO_DEFAULT_PATH)
find_library(MDLLM_LLAMA_LIBRARY llama HINTS "${MDLLM_LLAMA_LIB_DIR}" NO_DEFAULT_PATH)
if(MDLLM_LLAMA_HEADER AND MDLLM_LLAMA_LIBRARY)
  set(MDLLM_LLAMA_FOUND TRUE)
  get_filename_component(MDLLM_LLAMA_LIB_DIR "${MDLLM_LLAMA_LIBRARY}" DIRECTORY)
  add_library(mdllm::llama SHARED IMPORTED)
  set_target_properties(mdllm::llama PROPERTIES
    IMPORTED_LOCATION "${MDLLM_LLAMA_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${MDLLM_LLAMA_HEADER}"
    # libllama finds its ggml libraries through its own RUNPATH; let the linker do the same.
    INTERFACE_LINK_OPTIONS "LINKER:-rpath-link,${MDLLM_LLAMA_LIB_DIR}")
  message(STATUS "mdllm: llama.cpp found: ${MDLLM_LLAMA_LIBRARY}")
else()
  set(MDLLM_LLAMA_FOUND FALSE)
  message(STATUS "mdllm: llama.cpp not found; building without generation")
endif()
