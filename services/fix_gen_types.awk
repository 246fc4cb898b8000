# fix_gen_types.awk - post-process Thrift 0.17 c_glib generated code.
#
# The generator registers struct, exception and interface types lazily and
# without a lock:
#     static GType type = 0;  if (type == 0) { ... type = g_type_register_static (...); }
# Two threads that create the first instance of a type at the same time both
# register it; the loser gets "cannot register existing type" and a 0 type,
# and the request dies in GLib-GObject-CRITICAL assertions (seen with 8
# concurrent first createOrder calls).  This rewrites each such get_type()
# to g_once_init_enter/g_once_init_leave, as G_DEFINE_TYPE does.
/^[a-z0-9_]+_get_type \(void\)$/ { ingt = 1 }
ingt && /^  static GType type = 0;/ { sub(/static GType type = 0;/, "static gsize type = 0;"); fixed = 1 }
ingt && fixed && /^  if \(type == 0\)/ { sub(/if \(type == 0\)/, "if (g_once_init_enter (\\&type))") }
ingt && fixed && /type = g_type_register_static \(/ { sub(/type = g_type_register_static \(/, "g_once_init_leave (\\&type, g_type_register_static ("); inreg = 1 }
ingt && inreg && /\);[ \t]*$/ { sub(/\);[ \t]*$/, "));"); inreg = 0 }
ingt && fixed && /^  return type;/ { sub(/return type;/, "return (GType) type;") }
ingt && /^}$/ { ingt = 0; fixed = 0; inreg = 0 }
{ print }
