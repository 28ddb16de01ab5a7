# A Puppet value as a TOML value: strings quoted (the types of the class keep control characters,
# double quotes and backslashes out of every string, and this escapes the last two anyway),
# arrays of them, booleans and numbers as they are.
function shuffle_janitor::toml_value(Variant[String, Boolean, Numeric, Array[Variant[String, Boolean, Numeric]]] $value) >> String {
  $value ? {
    Array   => "[${value.map |$v| { shuffle_janitor::toml_value($v) }.join(', ')}]",
    String  => "\"${value.regsubst('\\\\', '\\\\\\\\', 'G').regsubst('"', '\\"', 'G')}\"",
    # Puppet writes a Float with six decimals ("0.850000"); %g gives the shortest form, and a
    # float without a point ("1") gets ".0" so that TOML reads a float, not an integer.
    Float   => String($value, '%g').then |$g| { if $g =~ /[.e]/ { $g } else { "${g}.0" } },
    default => String($value),
  }
}
