# Included by tests/CMakeLists.txt: the demo's tests (tests/test_demo.cpp) in vitscope_tests,
# drawing frames headless through vitscope_demo_core and starting the real app under Xvfb.
target_sources(vitscope_tests PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../../tests/test_demo.cpp)
target_link_libraries(vitscope_tests PRIVATE vitscope_demo_core)
target_compile_definitions(vitscope_tests PRIVATE VITSCOPE_DEMO="$<TARGET_FILE:vitscope-demo>")
add_dependencies(vitscope_tests vitscope-demo)
