# cmake --install: the libraries, their headers (include/vitscope/...) and a package config, so
# that a user's find_package(vitscope) + target_link_libraries(app PRIVATE vitscope::vitscope)
# works. vitscope_build_flags and the build's vitscope_blas stay out of the export.
include(CMakePackageConfigHelpers)

set(vitscope_layers vitscope_nn vitscope_io)
if(VITSCOPE_BUILD_IMAGE)
  list(APPEND vitscope_layers vitscope_image vitscope_gallery)
endif()
set_target_properties(vitscope PROPERTIES EXPORT_NAME vitscope)
install(TARGETS ${vitscope_layers} vitscope
  EXPORT vitscopeTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

install(FILES ${PROJECT_SOURCE_DIR}/include/vitscope/error.hpp
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/vitscope)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/vitscope/nn ${PROJECT_SOURCE_DIR}/include/vitscope/io
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/vitscope)
if(VITSCOPE_BUILD_IMAGE)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/vitscope/image
    ${PROJECT_SOURCE_DIR}/include/vitscope/gallery
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/vitscope)
endif()

set(vitscope_config_dir ${CMAKE_INSTALL_LIBDIR}/cmake/vitscope)
install(EXPORT vitscopeTargets NAMESPACE vitscope:: DESTINATION ${vitscope_config_dir})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/vitscopeConfig.cmake.in
  ${PROJECT_BINARY_DIR}/vitscopeConfig.cmake
  INSTALL_DESTINATION ${vitscope_config_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/vitscopeConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/vitscopeConfig.cmake
  ${PROJECT_BINARY_DIR}/vitscopeConfigVersion.cmake
  DESTINATION ${vitscope_config_dir})
