/* Read focalnetclassify's results from C: the `classification` param of each
 * GstVideoRegionOfInterestMeta on the buffers reaching the sink, and its element messages.
 *
 *   gcc focalnet_meta.c -o focalnet_meta $(pkg-config --cflags --libs gstreamer-1.0 gstreamer-video-1.0)
 *   export GST_PLUGIN_PATH=$(focalnet-edge gst --plugin-path)
 *   ./focalnet_meta "multifilesrc location=f_%03d.png caps=image/png,framerate=1/1 ! pngdec ! videoconvert \
 *       ! focalnetclassify name=cls model=out/ ! fakesink name=sink" [--region TYPE,X,Y,W,H ...]
 *
 * The pipeline must name the classifier `cls` and the sink `sink`. Each --region is attached to every
 * buffer entering `cls` (as a detector would), for its secondary mode. Prints one tab-separated line
 * per region of interest at the sink:
 *   roi FRAME TYPE X Y W H LABEL CLASS-ID CONFIDENCE TOP-K-COUNT     (LABEL "-" when not classified)
 * and one per element message of cls:
 *   message FRAME N LABEL...                                          (the N labels it lists)
 * then "messages N" (their count); on an error, "error: MESSAGE" on stderr and exit 1.
 */
#include <gst/gst.h>
#include <gst/video/video.h>
#include <stdio.h>
#include <string.h>

typedef struct { gchar type[64]; guint x, y, w, h; } Region;

static Region regions[32];
static guint n_regions = 0;
static guint frame = 0;

static GstPadProbeReturn attach_regions (GstPad * pad, GstPadProbeInfo * info, gpointer data)
{
  GstBuffer *buf = gst_buffer_make_writable (GST_PAD_PROBE_INFO_BUFFER (info));
  for (guint i = 0; i < n_regions; i++)
    gst_buffer_add_video_region_of_interest_meta (buf, regions[i].type, regions[i].x, regions[i].y, regions[i].w, regions[i].h);
  GST_PAD_PROBE_INFO_DATA (info) = buf;
  return GST_PAD_PROBE_OK;
}

static GstPadProbeReturn read_results (GstPad * pad, GstPadProbeInfo * info, gpointer data)
{
  GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER (info);
  gpointer state = NULL;
  GstMeta *meta;
  while ((meta = gst_buffer_iterate_meta_filtered (buf, &state, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))) {
    GstVideoRegionOfInterestMeta *roi = (GstVideoRegionOfInterestMeta *) meta;
    GstStructure *s = gst_video_region_of_interest_meta_get_param (roi, "classification");
    const gchar *label = "-";
    gint class_id = -1;
    gdouble confidence = 0.0;
    guint top_k = 0;
    if (s) {
      label = gst_structure_get_string (s, "label");
      gst_structure_get_int (s, "class-id", &class_id);
      gst_structure_get_double (s, "confidence", &confidence);
      top_k = gst_value_array_get_size (gst_structure_get_value (s, "top-k-labels"));
    }
    printf ("roi\t%u\t%s\t%u\t%u\t%u\t%u\t%s\t%d\t%.9f\t%u\n", frame, g_quark_to_string (roi->roi_type),
        roi->x, roi->y, roi->w, roi->h, label, class_id, confidence, top_k);
  }
  frame++;
  return GST_PAD_PROBE_OK;
}

int main (int argc, char **argv)
{
  gst_init (&argc, &argv);
  if (argc < 2) {
    fprintf (stderr, "usage: %s PIPELINE [--region TYPE,X,Y,W,H ...]\n", argv[0]);
    return 2;
  }
  for (int i = 2; i + 1 < argc && n_regions < 32; i += 2) {
    Region *r = &regions[n_regions];
    if (strcmp (argv[i], "--region") || sscanf (argv[i + 1], "%63[^,],%u,%u,%u,%u", r->type, &r->x, &r->y, &r->w, &r->h) != 5) {
      fprintf (stderr, "error: expected --region TYPE,X,Y,W,H, got %s %s\n", argv[i], argv[i + 1]);
      return 2;
    }
    n_regions++;
  }
  GError *err = NULL;
  GstElement *pipeline = gst_parse_launch (argv[1], &err);
  if (err) {  /* a pipeline that does not parse, or whose elements do not link (e.g. caps no element takes) */
    fprintf (stderr, "error: %s\n", err->message);
    return 1;
  }
  GstElement *cls = gst_bin_get_by_name (GST_BIN (pipeline), "cls");
  GstElement *sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
  if (!cls || !sink) {
    fprintf (stderr, "error: the pipeline needs elements named cls and sink\n");
    return 2;
  }
  GstPad *pad = gst_element_get_static_pad (cls, "sink");
  if (n_regions)
    gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, attach_regions, NULL, NULL);
  gst_object_unref (pad);
  pad = gst_element_get_static_pad (sink, "sink");
  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, read_results, NULL, NULL);
  gst_object_unref (pad);

  GstBus *bus = gst_element_get_bus (pipeline);
  int code = 0, messages = 0;
  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  for (;;) {
    GstMessage *msg = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
        GST_MESSAGE_ERROR | GST_MESSAGE_EOS | GST_MESSAGE_ELEMENT);
    if (!msg) {
      fprintf (stderr, "error: no end of stream within 60 s\n");
      code = 1;
      break;
    }
    if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ELEMENT) {
      const GstStructure *s = gst_message_get_structure (msg);
      if (GST_MESSAGE_SRC (msg) == GST_OBJECT (cls) && gst_structure_has_name (s, "focalnetclassify")) {
        guint64 index = 0;
        const GValue *labels = gst_structure_get_value (s, "label");
        gst_structure_get_uint64 (s, "frame", &index);
        flockfile (stdout);  /* one line, not interleaved with the probe's lines from the streaming thread */
        printf ("message\t%" G_GUINT64_FORMAT "\t%u", index, gst_value_array_get_size (labels));
        for (guint i = 0; i < gst_value_array_get_size (labels); i++)
          printf ("\t%s", g_value_get_string (gst_value_array_get_value (labels, i)));
        printf ("\n");
        funlockfile (stdout);
        messages++;
      }
      gst_message_unref (msg);
      continue;
    }
    if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ERROR) {
      GError *e = NULL;
      gst_message_parse_error (msg, &e, NULL);
      fprintf (stderr, "error: %s\n", e->message);
      g_error_free (e);
      code = 1;
    }
    gst_message_unref (msg);
    break;
  }
  printf ("messages\t%d\n", messages);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (cls);
  gst_object_unref (sink);
  gst_object_unref (pipeline);
  return code;
}
