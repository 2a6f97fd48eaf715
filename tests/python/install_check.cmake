# Installs the Python component into a scratch prefix and imports kith from
# there (not from the build tree), with the interpreter it was built for.
# -DKITH_BINARY_DIR -DPREFIX -DPYTHON -DREL (the install dir relative to the prefix)
file(REMOVE_RECURSE ${PREFIX})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${KITH_BINARY_DIR} --prefix ${PREFIX} --component python
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed: ${rc}")
endif()
set(ENV{PYTHONPATH} ${PREFIX}/${REL})
execute_process(COMMAND ${PYTHON} -c
  "import kith, sys; assert kith.__file__.startswith(sys.argv[1]), kith.__file__; n = kith.Node('inst@localhost'); p = n.spawn(lambda a, m: a.reply(m, m.body) if isinstance(m, kith.Request) else None); assert n.call_pid(p, 7) == 7; n.stop(); print('imported', kith.__file__)"
  ${PREFIX}
  WORKING_DIRECTORY ${PREFIX}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "importing the installed kith failed")
endif()
foreach(f __init__.py __init__.pyi py.typed _node.py _service.py _actors.py _events.py _log.py _options.py)
  if(NOT EXISTS ${PREFIX}/${REL}/kith/${f})
    message(FATAL_ERROR "not installed: ${REL}/kith/${f}")
  endif()
endforeach()
