# Shared helpers for kith's component CMakeLists.

# kith_component(NAME <name> SOURCES ... [DEPS ...])
# Defines library target kith_<name>, alias kith::<name>, with public headers in
# <dir>/include, installed and exported.
function(kith_component)
  cmake_parse_arguments(K "" "NAME" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(kith_${K_NAME} ${K_SOURCES})
  add_library(kith::${K_NAME} ALIAS kith_${K_NAME})
  set_target_properties(kith_${K_NAME} PROPERTIES EXPORT_NAME ${K_NAME} OUTPUT_NAME kith_${K_NAME})
  target_include_directories(kith_${K_NAME}
    PUBLIC $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
    PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_compile_options(kith_${K_NAME} PRIVATE -Wall -Wextra)
  target_link_libraries(kith_${K_NAME} PUBLIC ${K_DEPS} PRIVATE ${K_PRIVATE_DEPS})
  install(TARGETS kith_${K_NAME} EXPORT kithTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/include/kith)
    install(DIRECTORY include/kith DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  endif()
endfunction()

# kith_test(NAME <name> SOURCES ... [LIBS ...] [TIMEOUT s] [INTEGRATION] [SERIAL])
# (LABELS is accepted and ignored.) Test case names must not contain ";".
# A Catch2 test executable; each TEST_CASE becomes a CTest test with a timeout.
# Tests are labelled "unit" (also run under ASan+UBSan by `./dev test`) unless
# INTEGRATION is given (multi-process / network-namespace tests: label
# "integration", optimised build only). SERIAL: its tests run alone (CTest's
# RUN_SERIAL), for tests that other tests' load would disturb.
function(kith_test)
  cmake_parse_arguments(K "INTEGRATION;SERIAL" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  if(NOT K_TIMEOUT)
    set(K_TIMEOUT 60)
  endif()
  add_executable(${K_NAME} ${K_SOURCES})
  target_link_libraries(${K_NAME} PRIVATE ${K_LIBS} kith_catch_main)
  target_compile_options(${K_NAME} PRIVATE -Wall -Wextra)
  target_compile_definitions(${K_NAME} PRIVATE KITH_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    KITH_BINARY_DIR="${PROJECT_BINARY_DIR}")
  # One label per test: catch_discover_tests cannot pass a list through.
  if(K_INTEGRATION)
    set(label integration)
  else()
    set(label unit)
    set_property(GLOBAL APPEND PROPERTY KITH_UNIT_TEST_TARGETS ${K_NAME})
  endif()
  # -w NoTests: a CTest whose name matches no test case fails instead of
  # passing with nothing run (a ';' in a TEST_CASE name splits it in two).
  set(serial)
  if(K_SERIAL)
    set(serial RUN_SERIAL TRUE)
  endif()
  catch_discover_tests(${K_NAME} EXTRA_ARGS -w NoTests PROPERTIES TIMEOUT ${K_TIMEOUT} LABELS ${label} ${serial})
endfunction()
