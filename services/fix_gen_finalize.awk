# fix_gen_finalize.awk - post-process Thrift 0.17 c_glib generated code.
#
# The generator emits finalize functions for structs and exceptions that
# never chain up to the parent class, so GObject's own finalize does not run
# and every struct instance leaks its qdata (about 48 bytes: the property
# notify queue that g_object_new/g_object_set create).  A service answering
# getCustomers for N customers would leak ~48*N bytes per call.  This adds
# the missing chain-up to every "<type>_finalize (GObject *object)" that has
# none, through the type's own get_type() so that subclasses are safe.
/^[a-z0-9_]+_finalize \(GObject \*object\)$/ {
    fn = $1
    sub(/_finalize$/, "", fn)
    infn = 1
    chained = 0
}
infn && /->finalize \(/ { chained = 1 }
infn && /^}$/ {
    if (!chained)
        print "  G_OBJECT_CLASS (g_type_class_peek_parent (g_type_class_peek (" fn "_get_type ())))->finalize (object); /* added by fix_gen_finalize.awk */"
    infn = 0
}
{ print }
