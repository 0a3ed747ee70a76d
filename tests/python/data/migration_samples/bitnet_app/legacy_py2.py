# An old Python 2 script kept for reference; it does not parse under Python 3.
import model as fast
print "generating with", fast
