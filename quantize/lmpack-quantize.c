/* lmpack quantize IN.lmpk -o OUT.lmpk [options]: the convert pass with a
 * float container as the source (convert/cli_main.h). */
#include "convert/cli_main.h"

int main(int argc, char **argv)
{
    return convert_main(argc, argv, "quantize", 1);
}
