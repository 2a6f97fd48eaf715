# cmake -DIN=file -DOUT=header.h -P embed_bytes.cmake: writes IN's bytes as
# `static const unsigned char kith_embedded[]` (and its size) into OUT.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR size "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE ${OUT} "// Generated from ${IN} by cmake/embed_bytes.cmake; do not edit.\n"
  "static const unsigned char kith_embedded[${size}] = {\n${bytes}\n};\n")
