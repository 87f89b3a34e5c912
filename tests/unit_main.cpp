// The one doctest binary for unit tests of the pure core and other I/O-free code.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
